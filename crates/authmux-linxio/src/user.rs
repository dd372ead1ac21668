//! [`LinxioUserExt`]: typed access to the Linxio-specific fields of a `GET /me` answer,
//! which [`UserProfile::raw`] keeps whole.

use authmux_core::UserProfile;
use serde_json::{Map, Value};

/// Linxio's fields of a [`UserProfile`]. Each returns `None` (or an empty list) when the
/// field was not sent, was projected away with `fields[]`, or has an unexpected type.
///
/// ```
/// use authmux_linxio::LinxioUserExt;
/// use authmux_linxio::authmux_core::UserProfile;
///
/// let user = UserProfile::from_json(
///     serde_json::json!({"id": 7, "fullName": "Ann", "teamType": "client", "roleId": 3,
///                        "permissions": ["vehicle.view"], "team": {"id": 107}}),
///     &["fullName"],
/// );
/// assert_eq!(user.team_type(), Some("client"));
/// assert_eq!(user.role_id().as_deref(), Some("3"));
/// assert_eq!(user.permissions(), ["vehicle.view"]);
/// assert!(user.team().is_some());
/// ```
pub trait LinxioUserExt {
    /// `teamType`: `client`, `reseller`, `admin`, ...
    fn team_type(&self) -> Option<&str>;
    /// `roleId` as text (a number or a string on the wire).
    fn role_id(&self) -> Option<String>;
    /// `permissions`: the permission keys (non-string entries are skipped).
    fn permissions(&self) -> Vec<&str>;
    /// `team`: the current team's details.
    fn team(&self) -> Option<&Map<String, Value>>;
}

impl LinxioUserExt for UserProfile {
    fn team_type(&self) -> Option<&str> {
        self.field("teamType").and_then(Value::as_str)
    }

    fn role_id(&self) -> Option<String> {
        match self.field("roleId")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn permissions(&self) -> Vec<&str> {
        self.field("permissions")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn team(&self) -> Option<&Map<String, Value>> {
        self.field("team").and_then(Value::as_object)
    }
}
