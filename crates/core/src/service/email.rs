//! Email verification as ZITADEL's user service does it: a user added with an address, a code
//! sent (or handed back) to verify it, resent, verified; and a change of address.

use crate::audit::{Action, SecurityEvent};
use crate::code::{CodePurpose, CodeSecret};
use crate::email::EmailAddress;
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::{Locale, Permission, Principal, User, UserKind, UserState};
use crate::rules::{
    Actor, CodeUse, CreateUser, Delivery, EmailUpdate, NewCode, UpdateEmail, UserKey,
};
use crate::url_template::UrlTemplate;

use super::Enroll;

/// How a new verification code reaches its user.
#[derive(Debug, Clone)]
pub enum CodeDelivery {
    /// An email whose link follows `url_template`, or the hosted verification page without one.
    Email { url_template: Option<UrlTemplate> },
    /// Handed back to the caller; nothing is sent.
    Returned,
}

/// What becomes of a new address: a code to verify it, or verified as it is set.
#[derive(Debug, Clone)]
pub enum EmailVerification {
    Code(CodeDelivery),
    Verified,
}

impl EmailVerification {
    fn emails(&self) -> bool {
        matches!(self, Self::Code(CodeDelivery::Email { .. }))
    }
}

/// A user added through the user service.
#[derive(Debug, Clone)]
pub struct NewHuman {
    pub org_id: OrgId,
    pub email: EmailAddress,
    pub locale: Option<Locale>,
    pub verification: EmailVerification,
}

/// The user after a change, and the code when the caller asked for it back.
#[derive(Debug, Clone)]
pub struct EmailWithCode {
    pub user: User,
    pub code: Option<CodeSecret>,
}

impl Enroll {
    /// Adds a user with an address, needing `user.write` in the user's organisation.
    pub async fn add_human(&self, caller: &Principal, new: NewHuman) -> Result<EmailWithCode> {
        let org_id = new.org_id.clone();
        let added = self.create_human(caller, new).await;
        let event = SecurityEvent::new(Action::UserCreate).org(&org_id);
        match &added {
            Ok(added) => event.user(&added.user.id).succeeded(),
            Err(error) => event.refused(error),
        }
        added
    }

    async fn create_human(&self, caller: &Principal, new: NewHuman) -> Result<EmailWithCode> {
        if caller.user.org_id != new.org_id || !caller.holds(&Permission::USER_WRITE) {
            return Err(actor(caller).refusal());
        }
        if new.verification.emails() {
            self.org_may_send(&new.org_id)?;
        }
        let (code, returned) = self.address_code(&new.verification);
        let command = CreateUser {
            user_id: UserId::generate(),
            cooldown_subject: self.hasher.cooldown_subject(&new.org_id, &new.email),
            org_id: new.org_id,
            username: new.email,
            name: None,
            kind: UserKind::EndUser,
            state: UserState::Pending,
            locale: new.locale,
            code,
            user_action: None,
            now: self.clock.now(),
            policy: self.policy,
        };
        let created = self.store.create_user(command).await?;
        if created.message_id.is_some() {
            self.org_sent(&created.user.org_id);
            self.signal.message_enqueued();
        }
        Ok(EmailWithCode {
            user: created.user,
            code: returned,
        })
    }

    /// A new code for the user's address; `require_pending` makes it a resend, refused when
    /// no code is pending.
    pub async fn send_email_code(
        &self,
        caller: &Principal,
        user_id: UserId,
        delivery: CodeDelivery,
        require_pending: bool,
    ) -> Result<EmailWithCode> {
        if matches!(delivery, CodeDelivery::Email { .. }) {
            self.org_may_send(&caller.user.org_id)?;
        }
        let (code, returned) = self.email_code(&delivery);
        let update = EmailUpdate::SendCode {
            code,
            require_pending,
        };
        self.run_update(actor(caller), user_id, update, returned)
            .await
    }

    /// The user asks, from the page its link opened, for a new code by email: only while one is
    /// pending, and within the cooldown of its address like any other send.
    pub async fn request_email_code(&self, user_id: UserId) -> Result<()> {
        let (code, _) = self.email_code(&CodeDelivery::Email { url_template: None });
        let update = EmailUpdate::SendCode {
            code,
            require_pending: true,
        };
        self.run_update(Actor::the_user(user_id.clone()), user_id, update, None)
            .await
            .map(drop)
    }

    /// Gives the user a new address, to verify with a code or verified at once.
    pub async fn set_email(
        &self,
        caller: &Principal,
        user_id: UserId,
        email: EmailAddress,
        verification: EmailVerification,
    ) -> Result<EmailWithCode> {
        if verification.emails() {
            self.org_may_send(&caller.user.org_id)?;
        }
        let (code, returned) = self.address_code(&verification);
        let update = EmailUpdate::ChangeAddress { email, code };
        self.run_update(actor(caller), user_id, update, returned)
            .await
    }

    /// Verifies the user's address with its newest code. Anyone holding the code may: the
    /// code is the proof.
    pub async fn verify_email(&self, user_id: UserId, submitted: CodeSecret) -> Result<User> {
        if submitted.expose().trim().is_empty() {
            return Err(Error::CodeInvalid);
        }
        let verified = self
            .verify_code(
                UserKey::Id(user_id),
                CodePurpose::EmailVerification,
                submitted,
                CodeUse::Consume,
            )
            .await?;
        Ok(verified.user)
    }

    async fn run_update(
        &self,
        actor: Actor,
        user_id: UserId,
        update: EmailUpdate,
        returned: Option<CodeSecret>,
    ) -> Result<EmailWithCode> {
        let emailed = matches!(
            &update,
            EmailUpdate::SendCode { code, .. } | EmailUpdate::ChangeAddress { code: Some(code), .. }
                if code.delivery == Delivery::Email
        );
        let event_user = user_id.clone();
        let command = UpdateEmail {
            user_id,
            actor,
            update,
            hasher: self.hasher.clone(),
            now: self.clock.now(),
            policy: self.policy,
        };
        let updated = self.store.update_email(command).await;
        let event = SecurityEvent::new(Action::CodeSend).user(&event_user);
        match &updated {
            Ok(updated) => event.org(&updated.user.org_id).succeeded(),
            Err(error) => event.refused(error),
        }
        let updated = updated?;
        if emailed {
            self.org_sent(&updated.user.org_id);
            self.signal.message_enqueued();
        }
        Ok(EmailWithCode {
            user: updated.user,
            code: returned,
        })
    }

    /// A verification code for `delivery`, and the code itself when it is to be handed back.
    fn email_code(&self, delivery: &CodeDelivery) -> (NewCode, Option<CodeSecret>) {
        let purpose = CodePurpose::EmailVerification;
        let (delivery, url_template) = match delivery {
            CodeDelivery::Email { url_template } => (Delivery::Email, url_template.as_ref()),
            CodeDelivery::Returned => (Delivery::Returned, None),
        };
        let (prepared, secret) = self.prepare_code(purpose, url_template);
        let returned = (delivery == Delivery::Returned).then_some(secret);
        let code = NewCode {
            delivery,
            ..NewCode::emailed(purpose, prepared)
        };
        (code, returned)
    }

    /// The code a new address gets, if any, and the code itself when it is handed back.
    fn address_code(
        &self,
        verification: &EmailVerification,
    ) -> (Option<NewCode>, Option<CodeSecret>) {
        match verification {
            EmailVerification::Code(delivery) => {
                let (code, returned) = self.email_code(delivery);
                (Some(code), returned)
            }
            EmailVerification::Verified => (None, None),
        }
    }
}

fn actor(caller: &Principal) -> Actor {
    Actor {
        user_id: caller.user.id.clone(),
        writes_users_of: caller
            .holds(&Permission::USER_WRITE)
            .then(|| caller.user.org_id.clone()),
        described: caller.describe(),
    }
}
