//! What every handler can reach.

use std::sync::Arc;

use enroll_core::service::Enroll;

use crate::faces::singularity::SingularitySettings;
use crate::metrics::Metrics;
use crate::pacing::AnswerFloor;

#[derive(Clone, Debug)]
pub struct AppState {
    pub enroll: Arc<Enroll>,
    pub metrics: Arc<Metrics>,
    /// Mail is captured in the development inbox rather than sent.
    pub inbox_enabled: bool,
    pub singularity: Arc<SingularitySettings>,
    /// The least time the endpoints anyone may call take to answer.
    pub answer_floor: AnswerFloor,
}
