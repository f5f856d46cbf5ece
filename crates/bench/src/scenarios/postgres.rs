//! Dfns resend on PostgreSQL: one server instance, then two on the same database with the
//! connections split between them (the scale-out path).

use super::{Emails, Suite};
use crate::db::StoreKind;
use crate::requests;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let connections = suite.options.connections;
    let Some(template) = suite.postgres().await? else {
        return Ok(());
    };
    let seeded = template.seeded.clone();
    for (instances, store) in [(1, "PostgreSQL"), (2, "PostgreSQL, 2 instances")] {
        suite
            .timed_row(
                StoreKind::Postgres,
                instances,
                if instances == 1 {
                    "resend.dfns.postgres"
                } else {
                    "resend.dfns.postgres2"
                },
                "resend, Dfns (PUT /auth/registration/code)",
                store,
                requests::dfns_resend_all(&seeded, connections),
                Emails::OnePerSuccess,
            )
            .await?;
    }
    Ok(())
}
