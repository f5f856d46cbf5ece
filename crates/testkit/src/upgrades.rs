//! Data written by an older schema, and what a store must make of it once it has migrated:
//! shared by the stores' upgrade tests, each writing the rows in its own SQL.

use enroll_core::clock::Timestamp;
use enroll_core::code::{CodePurpose, CodeState};
use enroll_core::ids::{CodeId, OrgId, UserId};
use enroll_core::model::CodeRecord;
use enroll_core::ports::Directory;

/// One code as the table of all codes held it, before the current ones moved into their
/// users' rows.
pub struct OldCode {
    pub user: UserId,
    /// The order of issue among the user's codes.
    pub seq: i64,
    pub id: CodeId,
    pub purpose: CodePurpose,
    pub state: CodeState,
    pub failed_attempts: u32,
    pub created_at: i64,
}

/// Three users of one organisation and their codes. Jane's are of two purposes, interleaved
/// (a password reset between her verifications), and her active verification code is stamped
/// before the used one it replaced, as an instance whose clock is behind stamps it; John has
/// one active code, and nobody none.
pub struct CodesBeforeUserRows {
    pub org: OrgId,
    pub jane: UserId,
    pub john: UserId,
    pub nobody: UserId,
    pub codes: Vec<OldCode>,
}

impl Default for CodesBeforeUserRows {
    fn default() -> Self {
        Self::new()
    }
}

impl CodesBeforeUserRows {
    pub fn new() -> Self {
        let (jane, john, nobody) = (UserId::generate(), UserId::generate(), UserId::generate());
        let code = |user: &UserId, seq, purpose, state, failed_attempts, created_at| OldCode {
            user: user.clone(),
            seq,
            id: CodeId::generate_at(Timestamp::from_millis(created_at)),
            purpose,
            state,
            failed_attempts,
            created_at,
        };
        let verification = CodePurpose::EmailVerification;
        let codes = vec![
            code(&jane, 1, verification, CodeState::Superseded, 1, 100),
            code(
                &jane,
                2,
                CodePurpose::PasswordReset,
                CodeState::Active,
                0,
                200,
            ),
            code(&jane, 3, verification, CodeState::Used, 2, 400),
            code(&jane, 4, verification, CodeState::Active, 0, 300),
            code(
                &john,
                1,
                CodePurpose::Registration,
                CodeState::Active,
                0,
                150,
            ),
        ];
        Self {
            org: OrgId::generate(),
            jane,
            john,
            nobody,
            codes,
        }
    }

    /// The users: id, username and event sequence.
    pub fn users(&self) -> [(&UserId, &str, i64); 3] {
        [
            (&self.jane, "jane@example.com", 4),
            (&self.john, "john@example.com", 1),
            (&self.nobody, "nobody@example.com", 0),
        ]
    }

    /// The id of the code issued to `user` in position `seq`.
    pub fn id(&self, user: &UserId, seq: i64) -> &CodeId {
        &self
            .codes
            .iter()
            .find(|code| code.user == *user && code.seq == seq)
            .unwrap_or_else(|| panic!("no code {seq} of {user}"))
            .id
    }

    /// Jane's replaced codes, newest first, as the chain from her row names them.
    pub fn janes_past_codes(&self) -> [String; 2] {
        [
            self.id(&self.jane, 3).to_string(),
            self.id(&self.jane, 1).to_string(),
        ]
    }

    /// The migrated `store` keeps every code with its state, listed in the order of issue (by
    /// creation, and among Jane's verifications as they were stamped) and found by id.
    pub async fn assert_kept(&self, store: &dyn Directory) {
        let listed = |codes: Vec<CodeRecord>| -> Vec<(CodeId, CodeState, u32)> {
            codes
                .into_iter()
                .map(|code| (code.id, code.state, code.failed_attempts))
                .collect()
        };
        let expected = |user: &UserId, order: &[i64]| -> Vec<(CodeId, CodeState, u32)> {
            order
                .iter()
                .map(|seq| {
                    let code = self
                        .codes
                        .iter()
                        .find(|code| code.user == *user && code.seq == *seq)
                        .expect("a code");
                    (code.id.clone(), code.state, code.failed_attempts)
                })
                .collect()
        };
        assert_eq!(
            listed(store.codes(&self.jane).await.expect("jane's codes")),
            expected(&self.jane, &[1, 2, 4, 3]),
            "every code kept with its state, in the order of issue"
        );
        assert_eq!(
            listed(store.codes(&self.john).await.expect("john's codes")),
            expected(&self.john, &[1])
        );
        assert!(
            store
                .codes(&self.nobody)
                .await
                .expect("no codes")
                .is_empty()
        );
        for code in &self.codes {
            let found = store.code(&code.id).await.expect("a code by id");
            assert_eq!(
                found.map(|found| (found.state, found.purpose)),
                Some((code.state, code.purpose)),
                "{}",
                code.id
            );
        }
        let unknown = CodeId::generate_at(Timestamp::from_millis(500));
        assert!(store.code(&unknown).await.expect("a code by id").is_none());
    }
}
