//! What every handler can reach.

use std::ops::Deref;
use std::sync::Arc;

use enroll_core::service::Enroll;

use crate::faces::singularity::SingularitySettings;
use crate::metrics::Metrics;
use crate::pacing::AnswerFloor;

/// The router, every middleware that takes state and every `State` extractor clone this for
/// each request, so it is one shared pointer: a clone counts one reference, not one for each
/// part, on a count that both cores' requests touch.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub enroll: Arc<Enroll>,
    pub metrics: Arc<Metrics>,
    /// Mail is captured in the development inbox rather than sent.
    pub inbox_enabled: bool,
    pub singularity: SingularitySettings,
    /// The least time the endpoints anyone may call take to answer.
    pub answer_floor: AnswerFloor,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
