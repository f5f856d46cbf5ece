//! The benchmark suite of enroll (issue 7): starts `enroll serve` itself on temporary
//! databases, seeds users, drives load through every face and prints, per operation and
//! store, requests/s, the ratio to the `GET /healthz` ceiling measured in the same run, p50,
//! p99, max and the server's resident set; then the targets and whether each is met. Writes
//! the same as JSON and a chart of throughput against connections as SVG.
//!
//! `scripts/bench` builds the release binaries and runs this; see `--help`.

mod bulk;
mod db;
mod load;
mod options;
mod report;
mod requests;
mod scenarios;
mod seed;
mod server;
mod svg;

use anyhow::Context as _;
use enroll_core::clock::{Clock as _, SystemClock};
use serde_json::json;

fn options_json(options: &options::Options) -> serde_json::Value {
    json!({
        "users": options.users,
        "sizeUsers": options.size_users,
        "accounts": options.accounts,
        "connections": options.connections,
        "sweep": options.sweep,
        "warmupSeconds": options.warmup.as_secs_f64(),
        "seconds": options.duration.as_secs_f64(),
        "starts": options.starts,
        "postgres": options.postgres.is_some(),
        "only": options.only,
    })
}

/// Ctrl-C or SIGTERM (as `timeout` sends).
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options::parse()?;
    let at = SystemClock.now().to_rfc3339();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let conditions = format!(
        "{} s measured after {} s warm-up per row; {} connections; {} users per face ({} for size); {cores} cores shared by the server, the load generator and the SMTP sink",
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64(),
        options.connections,
        options.users,
        options.size_users,
    );
    eprintln!("{conditions}");
    let mut suite = scenarios::Suite::new(options);
    tokio::select! {
        () = scenarios::run(&mut suite) => {}
        () = interrupted() => {
            eprintln!("interrupted: cleaning up, then reporting what was measured");
            suite.report.warnings.push("the run was interrupted".to_owned());
        }
    }
    suite.clean_up().await;
    let options = suite.options.clone();
    let mut report = std::mem::take(&mut suite.report);
    scenarios::evaluate_targets(&mut report, &options);

    println!("\n{conditions}.\n");
    println!("{}", report.table());
    let notes = report.notes();
    if !notes.is_empty() {
        println!("{notes}");
    }
    println!("{}", report.targets_table());
    for (name, value) in &report.facts {
        println!("- {name}: {value}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }

    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("could not create {}", options.out.display()))?;
    let mut document = report.to_json(options_json(&options));
    document["at"] = json!(at);
    document["conditions"] = json!(conditions);
    let results = options.out.join("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&document)?)?;
    println!("\nwrote {}", results.display());
    if let Some(chart) = scenarios::chart(
        &report,
        &format!("Dfns resend and GET /healthz, {cores} cores, {at}"),
    ) {
        let path = options.out.join("throughput.svg");
        std::fs::write(&path, chart)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
