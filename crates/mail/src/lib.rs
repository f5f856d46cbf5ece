//! Mail for `enroll`: templates per message kind and locale, transports (SMTP with a pool, or
//! the development inbox), and the worker that delivers the outbox.

mod render;
mod transport;
mod worker;

pub use render::{
    InvalidSender, LOCALES, MailContext, MailSettings, RenderError, RenderedMail, Renderer,
    message_id_header,
};
pub use transport::{InboxTransport, MailTransport, SendError, SmtpTransport, SmtpUrlError};
pub use worker::{DeliveryStats, OutboxWorker, WorkerSignal};
