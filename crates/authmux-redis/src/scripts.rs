//! The Lua scripts [`crate::RedisStore`] runs on the server, each atomic there, and the
//! reading of their replies.

use std::sync::LazyLock;

use redis::{Script, Value};

/// Compare-and-swap of the session hash `KEYS[1]`, drawing versions from the
/// generation counter `KEYS[2]`.
///
/// `ARGV`: expected version (`""`: the key must be absent), `set` or `del`, the session
/// JSON, the key's TTL in milliseconds (0: none), a random start for a missing counter,
/// the newest session format this authmux reads.
///
/// Replies `{"done", version}` (`"0"` after a delete), `{"conflict"}` (absent),
/// `{"conflict", version, session}`, or `{"corrupt"}` for a value it cannot read (not a hash,
/// a missing field, a session that is not JSON with a dialect and tokens, a newer
/// format), which it leaves untouched.
pub(crate) static CAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('TYPE', KEYS[1])['ok']
local current = false
if kind == 'hash' then
  current = redis.call('HGET', KEYS[1], 'v')
  local stored = redis.call('HGET', KEYS[1], 's')
  if not current or not stored then
    return {'corrupt'}
  end
  local ok, doc = pcall(cjson.decode, stored)
  if not ok or type(doc) ~= 'table' or type(doc.dialect) ~= 'string'
      or type(doc.tokens) ~= 'table' or type(doc.format) ~= 'number'
      or doc.format > tonumber(ARGV[6]) then
    return {'corrupt'}
  end
elseif kind ~= 'none' then
  return {'corrupt'}
end
if (current or '') ~= ARGV[1] then
  if current then
    return {'conflict', current, redis.call('HGET', KEYS[1], 's')}
  end
  return {'conflict'}
end
if ARGV[2] == 'del' then
  redis.call('DEL', KEYS[1])
  return {'done', '0'}
end
local gen
if redis.call('EXISTS', KEYS[2]) == 1 then
  gen = redis.call('INCR', KEYS[2])
else
  gen = redis.call('INCRBY', KEYS[2], ARGV[5])
end
local version = string.format('%d', gen)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[3])
if tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {'done', version}
",
    )
});

/// Extends the lease of lock `KEYS[1]` to `ARGV[2]` ms if `ARGV[1]` still owns it.
/// Replies 1 (renewed) or 0 (no longer ours).
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes lock `KEYS[1]` if `ARGV[1]` still owns it. Replies 1 (released) or 0.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// What the [`CAS`] script answered.
#[derive(Debug, PartialEq)]
pub(crate) enum CasOutcome {
    /// Written; the new version (0 after a delete).
    Done(u64),
    /// Not written: the key is absent.
    ConflictEmpty,
    /// Not written: the key holds this version and session JSON.
    Conflict(Vec<u8>, Vec<u8>),
    /// Not written: the key holds something that is not a session hash.
    Corrupt,
}

/// Reads the [`CAS`] script's reply; `None` if it has an unexpected shape.
pub(crate) fn cas_outcome(reply: &[Value]) -> Option<CasOutcome> {
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    let tag = text(reply.first()?)?;
    match (tag.as_slice(), reply.len()) {
        (b"done", 2) => std::str::from_utf8(&text(&reply[1])?)
            .ok()?
            .parse()
            .ok()
            .map(CasOutcome::Done),
        (b"conflict", 1) => Some(CasOutcome::ConflictEmpty),
        (b"conflict", 3) => Some(CasOutcome::Conflict(text(&reply[1])?, text(&reply[2])?)),
        (b"corrupt", 1) => Some(CasOutcome::Corrupt),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_read_strictly() {
        assert_eq!(
            cas_outcome(&[bulk("done"), bulk("42")]),
            Some(CasOutcome::Done(42))
        );
        assert_eq!(
            cas_outcome(&[bulk("conflict")]),
            Some(CasOutcome::ConflictEmpty)
        );
        assert_eq!(
            cas_outcome(&[bulk("conflict"), bulk("7"), bulk("{}")]),
            Some(CasOutcome::Conflict(b"7".to_vec(), b"{}".to_vec()))
        );
        assert_eq!(cas_outcome(&[bulk("corrupt")]), Some(CasOutcome::Corrupt));
        assert_eq!(cas_outcome(&[bulk("done"), bulk("x")]), None);
        assert_eq!(cas_outcome(&[bulk("done")]), None);
        assert_eq!(cas_outcome(&[bulk("what")]), None);
        assert_eq!(cas_outcome(&[]), None);
    }
}
