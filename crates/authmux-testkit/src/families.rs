//! Token families: one per sign-in, holding every access and refresh token it issued.
//!
//! Each login starts a family ([`TokenFamilies::start`]). Access tokens are registered
//! by their `jti`; a family has at most one live refresh token. A refresh
//! ([`TokenFamilies::refresh`]) either keeps the refresh token or, with rotation,
//! replaces it: the old one is *retired*. Presenting a retired token is refused; with
//! reuse detection on it also revokes the whole family (every access and refresh token
//! of that sign-in), as careful servers do. An optional grace period accepts a just
//! retired token once more (Directus session mode), rotating again, so only the last
//! answer's token stays alive.
//!
//! A family also carries what a "sessions" page shows: the sign-in's User-Agent, IP,
//! creation and last-use times. LinkUTM's sessions are families without refresh tokens.
//!
//! ```
//! use authmux_testkit::families::{RefreshError, RefreshPolicy, TokenFamilies};
//! use std::time::SystemTime;
//!
//! let families = TokenFamilies::default();
//! let now = SystemTime::now();
//! let fam = families.start("user-1", now, None, None);
//! let first = families.issue_refresh(fam, now, None);
//! families.register_access(fam, "jti-1");
//! let policy = RefreshPolicy { rotate: true, reuse_detection: true, grace: None };
//! let second = families.refresh(&first, now, None, policy).unwrap().new_refresh.unwrap();
//! assert_eq!(families.refresh(&first, now, None, policy), Err(RefreshError::Reused));
//! // Reuse revoked the family: the new refresh token and the access token are dead too.
//! assert!(!families.is_access_live("jti-1"));
//! assert_eq!(families.refresh(&second, now, None, policy), Err(RefreshError::Revoked));
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::jwt::random_token;

/// A family's id.
pub type FamilyId = u64;

/// How `/refresh` treats refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Issue a new refresh token on each refresh and retire the presented one.
    pub rotate: bool,
    /// Presenting a retired token revokes the whole family.
    pub reuse_detection: bool,
    /// A retired token is still accepted (and rotated again) for this long after it was
    /// retired; the answer it got before dies.
    pub grace: Option<Duration>,
}

impl Default for RefreshPolicy {
    /// Rotation on, reuse detection off, no grace.
    fn default() -> Self {
        Self {
            rotate: true,
            reuse_detection: false,
            grace: None,
        }
    }
}

/// Why a refresh was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Never issued by this server.
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Retired by rotation (with reuse detection off, or within no grace).
    Retired,
    /// Retired and presented again with reuse detection on: the family is now revoked.
    Reused,
    /// Its family was revoked (logout, reuse, revoke-all).
    Revoked,
}

/// The result of a successful refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// The family.
    pub family: FamilyId,
    /// The family's subject (user id).
    pub subject: String,
    /// The new refresh token when rotated.
    pub new_refresh: Option<String>,
}

/// What a sessions list shows about a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyInfo {
    /// The id.
    pub id: FamilyId,
    /// The subject (user id).
    pub subject: String,
    /// When the sign-in happened (server time).
    pub created_at: SystemTime,
    /// When it was last used (a refresh, or an authorized call the fake reported).
    pub last_used_at: SystemTime,
    /// The sign-in's User-Agent.
    pub user_agent: Option<String>,
    /// The sign-in's client IP.
    pub ip: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    Retired { at: SystemTime },
}

#[derive(Debug)]
struct RefreshEntry {
    family: FamilyId,
    state: RefreshState,
    expires_at: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    next_id: FamilyId,
    families: HashMap<FamilyId, FamilyInfo>,
    refresh: HashMap<String, RefreshEntry>,
    access: HashMap<String, FamilyId>,
    revoked_access: std::collections::HashSet<String>,
}

/// The token-family store. Thread-safe.
#[derive(Debug, Default)]
pub struct TokenFamilies {
    inner: Mutex<State>,
}

impl TokenFamilies {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a family for a sign-in of `subject`.
    pub fn start(
        &self,
        subject: &str,
        now: SystemTime,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> FamilyId {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.families.insert(
            id,
            FamilyInfo {
                id,
                subject: subject.to_owned(),
                created_at: now,
                last_used_at: now,
                user_agent: user_agent.map(str::to_owned),
                ip: ip.map(str::to_owned),
                revoked: false,
            },
        );
        id
    }

    /// Issues the family's live refresh token (retiring any previous one), valid for
    /// `lifetime` (`None`: forever). Returns an opaque 48-character token.
    pub fn issue_refresh(
        &self,
        family: FamilyId,
        now: SystemTime,
        lifetime: Option<Duration>,
    ) -> String {
        let token = random_token(48);
        let mut s = self.lock();
        for entry in s.refresh.values_mut() {
            if entry.family == family && entry.state == RefreshState::Live {
                entry.state = RefreshState::Retired { at: now };
            }
        }
        s.refresh.insert(
            token.clone(),
            RefreshEntry {
                family,
                state: RefreshState::Live,
                expires_at: lifetime.map(|l| now + l),
            },
        );
        token
    }

    /// Registers an access token (by `jti`) as part of a family.
    pub fn register_access(&self, family: FamilyId, jti: &str) {
        self.lock().access.insert(jti.to_owned(), family);
    }

    /// Whether an access token may still be used: its family (if registered) is not
    /// revoked and the token itself was not revoked. Unregistered ids are live (the JWT
    /// signature and `exp` are checked elsewhere).
    pub fn is_access_live(&self, jti: &str) -> bool {
        let s = self.lock();
        if s.revoked_access.contains(jti) {
            return false;
        }
        s.access
            .get(jti)
            .and_then(|f| s.families.get(f))
            .is_none_or(|f| !f.revoked)
    }

    /// The family of an access token.
    pub fn family_of_access(&self, jti: &str) -> Option<FamilyId> {
        self.lock().access.get(jti).copied()
    }

    /// The family of a refresh token (live or not).
    pub fn family_of_refresh(&self, token: &str) -> Option<FamilyId> {
        self.lock().refresh.get(token).map(|e| e.family)
    }

    /// Revokes a single access token.
    pub fn revoke_access(&self, jti: &str) {
        self.lock().revoked_access.insert(jti.to_owned());
    }

    /// Exchanges a refresh token, following `policy`. The caller issues the new access
    /// token and registers it with the returned family.
    ///
    /// # Errors
    /// See [`RefreshError`].
    pub fn refresh(
        &self,
        token: &str,
        now: SystemTime,
        lifetime: Option<Duration>,
        policy: RefreshPolicy,
    ) -> Result<RefreshOutcome, RefreshError> {
        let (family, state, expires_at) = {
            let s = self.lock();
            let entry = s.refresh.get(token).ok_or(RefreshError::Unknown)?;
            (entry.family, entry.state, entry.expires_at)
        };
        let info = self.info(family).ok_or(RefreshError::Unknown)?;
        if info.revoked {
            return Err(RefreshError::Revoked);
        }
        if let RefreshState::Retired { at } = state {
            let in_grace = policy
                .grace
                .is_some_and(|g| now.duration_since(at).unwrap_or_default() < g);
            if !in_grace {
                if policy.reuse_detection {
                    self.revoke_family(family);
                    return Err(RefreshError::Reused);
                }
                return Err(RefreshError::Retired);
            }
        }
        if expires_at.is_some_and(|e| now >= e) {
            return Err(RefreshError::Expired);
        }
        self.touch(family, now);
        let new_refresh = policy
            .rotate
            .then(|| self.issue_refresh(family, now, lifetime));
        Ok(RefreshOutcome {
            family,
            subject: info.subject,
            new_refresh,
        })
    }

    /// Marks a family as used now (for "last active").
    pub fn touch(&self, family: FamilyId, now: SystemTime) {
        if let Some(f) = self.lock().families.get_mut(&family) {
            f.last_used_at = now;
        }
    }

    /// Revokes a family: all its access and refresh tokens stop working.
    /// Returns whether it existed and was live.
    pub fn revoke_family(&self, family: FamilyId) -> bool {
        let mut s = self.lock();
        match s.families.get_mut(&family) {
            Some(f) if !f.revoked => {
                f.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Revokes every live family of `subject`; returns how many.
    pub fn revoke_subject(&self, subject: &str) -> usize {
        let mut s = self.lock();
        let mut n = 0;
        for f in s
            .families
            .values_mut()
            .filter(|f| f.subject == subject && !f.revoked)
        {
            f.revoked = true;
            n += 1;
        }
        n
    }

    /// Revokes the family of a refresh token (logout); returns whether one was live.
    pub fn revoke_by_refresh(&self, token: &str) -> bool {
        match self.family_of_refresh(token) {
            Some(f) => self.revoke_family(f),
            None => false,
        }
    }

    /// A family's details.
    pub fn info(&self, family: FamilyId) -> Option<FamilyInfo> {
        self.lock().families.get(&family).cloned()
    }

    /// Whether a family was revoked (`false` for unknown ids).
    pub fn is_revoked(&self, family: FamilyId) -> bool {
        self.info(family).is_some_and(|f| f.revoked)
    }

    /// The live families of `subject`, oldest first.
    pub fn live_for(&self, subject: &str) -> Vec<FamilyInfo> {
        let mut out: Vec<FamilyInfo> = self
            .lock()
            .families
            .values()
            .filter(|f| f.subject == subject && !f.revoked)
            .cloned()
            .collect();
        out.sort_by_key(|f| f.id);
        out
    }

    /// Every family ever started, oldest first.
    pub fn all(&self) -> Vec<FamilyInfo> {
        let mut out: Vec<FamilyInfo> = self.lock().families.values().cloned().collect();
        out.sort_by_key(|f| f.id);
        out
    }

    /// The family's live refresh token, if any.
    pub fn live_refresh(&self, family: FamilyId) -> Option<String> {
        let s = self.lock();
        if s.families.get(&family).is_none_or(|f| f.revoked) {
            return None;
        }
        s.refresh
            .iter()
            .find(|(_, e)| e.family == family && e.state == RefreshState::Live)
            .map(|(t, _)| t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_rotation_the_token_keeps_working() {
        let f = TokenFamilies::default();
        let now = SystemTime::now();
        let fam = f.start("u", now, None, None);
        let t = f.issue_refresh(fam, now, None);
        let policy = RefreshPolicy {
            rotate: false,
            ..RefreshPolicy::default()
        };
        for _ in 0..3 {
            assert_eq!(f.refresh(&t, now, None, policy).unwrap().new_refresh, None);
        }
    }

    #[test]
    fn retired_without_detection_is_refused_but_family_lives() {
        let f = TokenFamilies::default();
        let now = SystemTime::now();
        let fam = f.start("u", now, None, None);
        let t1 = f.issue_refresh(fam, now, None);
        let policy = RefreshPolicy::default();
        let t2 = f
            .refresh(&t1, now, None, policy)
            .unwrap()
            .new_refresh
            .unwrap();
        assert_eq!(
            f.refresh(&t1, now, None, policy),
            Err(RefreshError::Retired)
        );
        assert!(f.refresh(&t2, now, None, policy).is_ok());
        assert_eq!(
            f.refresh("nope", now, None, policy),
            Err(RefreshError::Unknown)
        );
    }

    #[test]
    fn grace_accepts_retired_token_and_kills_previous_answer() {
        let f = TokenFamilies::default();
        let now = SystemTime::now();
        let fam = f.start("u", now, None, None);
        let t1 = f.issue_refresh(fam, now, None);
        let policy = RefreshPolicy {
            grace: Some(Duration::from_secs(10)),
            ..RefreshPolicy::default()
        };
        let a = f
            .refresh(&t1, now, None, policy)
            .unwrap()
            .new_refresh
            .unwrap();
        let b = f
            .refresh(&t1, now, None, policy)
            .unwrap()
            .new_refresh
            .unwrap();
        let later = now + Duration::from_secs(11);
        assert_eq!(
            f.refresh(&a, later, None, policy),
            Err(RefreshError::Retired)
        );
        assert!(f.refresh(&b, later, None, policy).is_ok());
    }

    #[test]
    fn refresh_tokens_expire() {
        let f = TokenFamilies::default();
        let now = SystemTime::now();
        let fam = f.start("u", now, None, None);
        let t = f.issue_refresh(fam, now, Some(Duration::from_secs(5)));
        let later = now + Duration::from_secs(5);
        assert_eq!(
            f.refresh(&t, later, None, RefreshPolicy::default()),
            Err(RefreshError::Expired)
        );
    }
}
