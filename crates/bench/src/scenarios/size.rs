//! Flat with size: the Dfns resend with `--size-users` users in the database, to users spread
//! over the whole table, against the row of the seeded users alone. The users beyond the
//! seeded ones are copied with SQL ([`crate::bulk`]).

use std::time::Instant;

use anyhow::Context as _;

use super::{Emails, Running, Suite, startup};
use crate::bulk;
use crate::db::StoreKind;
use crate::requests;

/// `count` user indexes spread at random over `0..size`.
fn sample(size: usize, count: usize) -> Vec<usize> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % u64::try_from(size.max(1)).unwrap_or(1)).unwrap_or(0)
        })
        .collect()
}

/// The store's part of the row keys (`resend.dfns.sqlite`, `resend.dfns.postgres`).
fn key_store(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
    }
}

fn millions(count: usize) -> String {
    if count >= 1_000_000 && count.is_multiple_of(1_000_000) {
        format!("{}M", count / 1_000_000)
    } else if count >= 1_000 && count.is_multiple_of(1_000) {
        format!("{}k", count / 1_000)
    } else {
        count.to_string()
    }
}

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let size = suite.options.size_users.max(suite.options.users);
    let connections = suite.options.connections;
    suite.ceiling(connections).await?;
    for kind in [StoreKind::Sqlite, StoreKind::Postgres] {
        let seeded = match kind {
            StoreKind::Sqlite => suite.sqlite().await?.seeded.clone(),
            StoreKind::Postgres => match suite.postgres().await? {
                Some(template) => template.seeded.clone(),
                None => continue,
            },
        };
        // The figure this one is held against, when the run has not measured it yet.
        let reference = format!("resend.dfns.{}", key_store(kind));
        if suite.report.row_at(&reference, connections).is_none() {
            suite
                .timed_row(
                    kind,
                    1,
                    &reference,
                    "resend, Dfns (PUT /auth/registration/code)",
                    kind.label(),
                    requests::dfns_resend_all(&seeded, connections),
                    Emails::OnePerSuccess,
                )
                .await?;
        }
        let template = match kind {
            StoreKind::Sqlite => suite.sqlite().await?,
            StoreKind::Postgres => suite.postgres().await?.context("seeded")?,
        };
        let instance = template.instance("size").await?;
        eprintln!(
            "copying {} users into {} with SQL…",
            size - seeded.dfns_users,
            kind.label()
        );
        let started = Instant::now();
        let bytes = match kind {
            StoreKind::Sqlite => {
                let file = instance.sqlite_file().context("a SQLite copy")?;
                let org_id = seeded.org_id.clone();
                let from = seeded.dfns_users;
                tokio::task::spawn_blocking(move || bulk::sqlite(&file, &org_id, from, size))
                    .await?
            }
            StoreKind::Postgres => {
                bulk::postgres(
                    &instance.database_url,
                    &seeded.org_id,
                    seeded.dfns_users,
                    size,
                )
                .await
            }
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(error) => {
                instance.remove().await;
                return Err(error);
            }
        };
        suite.report.facts.push((
            format!("bulk users, {}", kind.label()),
            format!(
                "{} users copied in {:.1} s; database {:.0} MiB",
                size - seeded.dfns_users,
                started.elapsed().as_secs_f64(),
                bytes as f64 / (1024.0 * 1024.0)
            ),
        ));
        let store = format!("{}, {} users", kind.label(), millions(size));
        let starts = startup::time_starts(
            suite,
            &instance,
            &format!("startup.{}.size", key_store(kind)),
            &store,
        )
        .await;
        let running = match starts {
            Ok(row) => {
                suite.push(row);
                Running::start(&suite.options, instance, 1).await
            }
            Err(error) => {
                instance.remove().await;
                return Err(error);
            }
        }?;
        let load = requests::dfns_resend(&seeded, &sample(size, seeded.dfns_users), connections);
        let result = suite.measure(&running, &load, Emails::OnePerSuccess).await;
        running.finish().await;
        let mut row = result?.into_row(
            format!("resend.dfns.{}.size", key_store(kind)),
            "resend, Dfns (PUT /auth/registration/code)",
            store,
            connections,
        );
        row.notes.push(format!(
            "{} users addressed, spread over all {size}",
            seeded.dfns_users
        ));
        suite.push(row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_the_range() {
        let picked = sample(1_000_000, 10_000);
        assert!(picked.iter().all(|&index| index < 1_000_000));
        assert!(picked.iter().any(|&index| index < 100_000));
        assert!(picked.iter().any(|&index| index > 900_000));
    }

    #[test]
    fn sizes_read_short() {
        assert_eq!(millions(1_000_000), "1M");
        assert_eq!(millions(100_000), "100k");
        assert_eq!(millions(1_234), "1234");
    }
}
