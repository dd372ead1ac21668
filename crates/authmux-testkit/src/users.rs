//! Seeded users shared by the fakes, with a small builder and documented defaults.
//!
//! Every fake starts with [`Users::defaults`] unless its builder is given other users:
//!
//! | email | password | notes |
//! |---|---|---|
//! | [`ALICE_EMAIL`] `alice@example.com` | [`DEFAULT_PASSWORD`] `correct horse battery` | no OTP; name "Alice Example"; team type `client`, role 3 |
//! | [`OTP_EMAIL`] `otp@example.com` | `correct horse battery` | OTP on, code [`OTP_CODE`] `123456` |
//! | [`FORBIDDEN_EMAIL`] `forbidden@example.com` | `correct horse battery` | correct password, but forbidden (403) |
//! | [`SUSPENDED_EMAIL`] `suspended@example.com` | `correct horse battery` | correct password, but suspended |
//!
//! Emails match case-insensitively. Each user has a random UUID `id` and a sequential
//! `number` (1, 2, ...) for dialects with numeric ids.

use std::sync::Mutex;

use crate::jwt::random_uuid;

/// The default users' password.
pub const DEFAULT_PASSWORD: &str = "correct horse battery";
/// A user without OTP.
pub const ALICE_EMAIL: &str = "alice@example.com";
/// A user with OTP on (code [`OTP_CODE`]).
pub const OTP_EMAIL: &str = "otp@example.com";
/// The OTP code of [`OTP_EMAIL`].
pub const OTP_CODE: &str = "123456";
/// A user whose sign-in is forbidden (403).
pub const FORBIDDEN_EMAIL: &str = "forbidden@example.com";
/// A suspended user.
pub const SUSPENDED_EMAIL: &str = "suspended@example.com";

/// A user the fakes know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// A random UUID.
    pub id: String,
    /// A sequential number (set when added to [`Users`]; 0 before).
    pub number: u64,
    /// The email (sign-in name).
    pub email: String,
    /// The password, in clear (it is a fake).
    pub password: String,
    /// The display name.
    pub name: String,
    /// The OTP code when OTP is on (fixed, so tests can type it).
    pub otp_code: Option<String>,
    /// Signs in with the right password but is refused with 403.
    pub forbidden: bool,
    /// Suspended: refused at sign-in.
    pub suspended: bool,
    /// A team type (`client`, `reseller`, `admin`), for dialects that have one.
    pub team_type: Option<String>,
    /// A role id, for dialects that have one.
    pub role_id: Option<u64>,
    /// Permission keys.
    pub permissions: Vec<String>,
}

impl User {
    /// A plain user: no OTP, not forbidden or suspended; the name is the email's local part.
    pub fn new(email: &str, password: &str) -> Self {
        Self {
            id: random_uuid(),
            number: 0,
            email: email.to_owned(),
            password: password.to_owned(),
            name: email.split('@').next().unwrap_or(email).to_owned(),
            otp_code: None,
            forbidden: false,
            suspended: false,
            team_type: None,
            role_id: None,
            permissions: Vec::new(),
        }
    }

    /// Sets the display name.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Turns OTP on with this code.
    #[must_use]
    pub fn otp(mut self, code: &str) -> Self {
        self.otp_code = Some(code.to_owned());
        self
    }

    /// Marks the user forbidden (403 at sign-in).
    #[must_use]
    pub fn forbidden(mut self) -> Self {
        self.forbidden = true;
        self
    }

    /// Marks the user suspended.
    #[must_use]
    pub fn suspended(mut self) -> Self {
        self.suspended = true;
        self
    }

    /// Sets the team type.
    #[must_use]
    pub fn team_type(mut self, team_type: &str) -> Self {
        self.team_type = Some(team_type.to_owned());
        self
    }

    /// Sets the role id.
    #[must_use]
    pub fn role_id(mut self, role_id: u64) -> Self {
        self.role_id = Some(role_id);
        self
    }

    /// Sets the permission keys.
    #[must_use]
    pub fn permissions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.permissions = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Fixes the id (defaults to a random UUID).
    #[must_use]
    pub fn id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.id);
        self
    }
}

/// The user table of one fake. Thread-safe.
#[derive(Debug, Default)]
pub struct Users {
    inner: Mutex<Vec<User>>,
}

impl Users {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<User>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The default users (see the module docs).
    pub fn default_list() -> Vec<User> {
        vec![
            User::new(ALICE_EMAIL, DEFAULT_PASSWORD)
                .name("Alice Example")
                .team_type("client")
                .role_id(3)
                .permissions(["vehicle.view", "vehicle.edit"]),
            User::new(OTP_EMAIL, DEFAULT_PASSWORD)
                .name("Otto Tp")
                .otp(OTP_CODE)
                .team_type("client"),
            User::new(FORBIDDEN_EMAIL, DEFAULT_PASSWORD)
                .name("Fred Forbidden")
                .forbidden(),
            User::new(SUSPENDED_EMAIL, DEFAULT_PASSWORD)
                .name("Sue Spended")
                .suspended(),
        ]
    }

    /// A table holding the default users.
    pub fn defaults() -> Self {
        Self::from_list(Self::default_list())
    }

    /// A table holding these users.
    pub fn from_list(users: Vec<User>) -> Self {
        let table = Self::default();
        for u in users {
            table.add(u);
        }
        table
    }

    /// Adds a user (replacing one with the same email) and numbers it; returns it.
    pub fn add(&self, mut user: User) -> User {
        record_secrets(&user);
        let mut list = self.lock();
        list.retain(|u| !u.email.eq_ignore_ascii_case(&user.email));
        user.number = list.iter().map(|u| u.number).max().unwrap_or(0) + 1;
        list.push(user.clone());
        user
    }

    /// Finds a user by email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<User> {
        self.lock()
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    }

    /// Finds a user by id.
    pub fn by_id(&self, id: &str) -> Option<User> {
        self.lock().iter().find(|u| u.id == id).cloned()
    }

    /// Changes a user's details in place; returns whether the user exists.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut User)) -> bool {
        match self.lock().iter_mut().find(|u| u.id == id) {
            Some(u) => {
                change(u);
                record_secrets(u);
                true
            }
            None => false,
        }
    }

    /// Every user.
    pub fn all(&self) -> Vec<User> {
        self.lock().clone()
    }
}

/// Records a user's password and one-time code in the secret log.
fn record_secrets(user: &User) {
    crate::secret_log::record(&user.password);
    if let Some(code) = &user.otp_code {
        crate::secret_log::record(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_numbered_and_found_case_insensitively() {
        let users = Users::defaults();
        let alice = users.by_email("ALICE@example.com").unwrap();
        assert_eq!(alice.number, 1);
        assert_eq!(
            users.by_email(OTP_EMAIL).unwrap().otp_code.as_deref(),
            Some(OTP_CODE)
        );
        assert!(users.by_email(FORBIDDEN_EMAIL).unwrap().forbidden);
        assert!(users.update(&alice.id, |u| u.password = "new password".into()));
        assert_eq!(users.by_id(&alice.id).unwrap().password, "new password");
    }
}
