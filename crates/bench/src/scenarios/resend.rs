//! Resend through every face on SQLite, after the ceiling.

use super::{Emails, Suite};
use crate::db::StoreKind;
use crate::requests;

pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let connections = suite.options.connections;
    suite.ceiling(connections).await?;
    let seeded = suite.sqlite().await?.seeded.clone();
    let faces = [
        (
            "resend.dfns",
            "resend, Dfns (PUT /auth/registration/code)",
            requests::dfns_resend_all(&seeded, connections),
        ),
        (
            "resend.grpc",
            "resend, ZITADEL gRPC (ResendEmailCode, HTTP/2)",
            requests::zitadel_grpc_resend(&seeded, connections),
        ),
        (
            "resend.rest",
            "resend, ZITADEL REST (POST …/email/resend)",
            requests::zitadel_rest_resend(&seeded, connections),
        ),
        (
            "resend.singularity",
            "resend, Singularity (POST …/verification/send)",
            requests::singularity_resend(&seeded, connections),
        ),
    ];
    for (key, operation, load) in faces {
        suite
            .timed_row(
                StoreKind::Sqlite,
                1,
                &format!("{key}.sqlite"),
                operation,
                "SQLite",
                load,
                Emails::OnePerSuccess,
            )
            .await?;
    }
    Ok(())
}
