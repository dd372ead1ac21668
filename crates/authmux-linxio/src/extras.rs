//! The keys of the non-secret data a Linxio session keeps in
//! [`Session::extras`](authmux_core::Session::extras), read with
//! [`Session::extra_str`](authmux_core::Session::extra_str).
//!
//! They are set from the login (or OTP) answer and kept across refreshes.

/// The email the session signed in with.
pub const EMAIL: &str = "email";
/// The `teamType` of the login answer (`client`, `reseller`, `admin`, ...), when sent.
pub const TEAM_TYPE: &str = "teamType";
/// The `roleId` of the login answer, as text (Linxio sends a number or a string).
pub const ROLE_ID: &str = "roleId";
