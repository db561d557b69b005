//! What parsing JSON may cost core. A parsed value takes many times its text (a number in an
//! array 32 bytes for 2 of text), so every message is counted on its bytes before it is parsed:
//! its shape (how many values and objects) against a cap per message, and its estimated parsed
//! size against one budget shared by every request and answer being handled at once. Messages
//! under [`SMALL`] are exempt, so large ones never hold up ordinary traffic.

use std::{sync::LazyLock, time::Duration};

use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Most JSON values (and objects among them) one `/mcp` request may hold.
pub const MAX_REQUEST_VALUES: usize = 262_144;
pub const MAX_REQUEST_OBJECTS: usize = 16_384;
/// Most JSON values (and objects among them) a server's answer may hold to be relayed.
pub const MAX_ANSWER_VALUES: usize = 524_288;
pub const MAX_ANSWER_OBJECTS: usize = 65_536;
/// The budget: estimated bytes of JSON being parsed, or held parsed by requests, at once.
pub const BUDGET_BYTES: usize = 128 << 20;
/// Of it, what requests may hold (they are held for their whole call): the rest stays free for
/// the answers those calls wait for.
pub const REQUEST_SHARE_BYTES: usize = BUDGET_BYTES / 2;
/// Messages below this are not counted against the budget.
pub const SMALL: usize = 64 << 10;
/// How long a large request waits for room in the budget before it is refused.
pub const REQUEST_WAIT: Duration = Duration::from_secs(30);

/// Budget units are KiB (a semaphore counts in u32).
static BUDGET: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(BUDGET_BYTES >> 10));
static REQUEST_SHARE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(REQUEST_SHARE_BYTES >> 10));

/// Room a large request holds: its share of the requests' part, and of the whole budget.
pub struct RequestRoom {
    _share: SemaphorePermit<'static>,
    _budget: SemaphorePermit<'static>,
}

/// How many values and objects a JSON text holds, counted on its bytes without parsing it (an
/// upper bound: each `,` `[` `{` outside strings starts a value).
pub fn json_shape(text: &[u8]) -> (usize, usize) {
    let (mut values, mut objects) = (1, 0);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' => values += 1,
            b'{' => {
                values += 1;
                objects += 1;
            }
            _ => {}
        }
    }
    (values, objects)
}

/// What parsing `text` of this shape may take: the text, a `Value` per value, a map node per
/// object, in budget units (KiB).
fn units(text_len: usize, values: usize, objects: usize) -> u32 {
    let bytes = text_len + values * 32 + objects * 96;
    (bytes >> 10).clamp(1, BUDGET_BYTES >> 10) as u32
}

/// Room in the budget for one request of `text_len` bytes and this shape, held while it is
/// handled; waits for room at most [`REQUEST_WAIT`]. None: small, nothing to hold.
pub async fn for_request(text_len: usize, values: usize, objects: usize) -> Result<Option<RequestRoom>, String> {
    if text_len < SMALL {
        return Ok(None);
    }
    let wanted = units(text_len, values, objects).min((REQUEST_SHARE_BYTES >> 10) as u32);
    let room = async {
        let share = REQUEST_SHARE.acquire_many(wanted).await.ok()?;
        let budget = BUDGET.acquire_many(wanted).await.ok()?;
        Some(RequestRoom { _share: share, _budget: budget })
    };
    match tokio::time::timeout(REQUEST_WAIT, room).await {
        Ok(Some(room)) => Ok(Some(room)),
        _ => Err(format!(
            "core is handling {} MiB of other large requests; retry in a moment",
            REQUEST_SHARE_BYTES >> 20
        )),
    }
}

/// Why a server's answer is not relayed.
#[derive(Debug, thiserror::Error)]
pub enum Unrelayed {
    #[error(
        "the answer holds {0} JSON values and {1} objects; at most {MAX_ANSWER_VALUES} values and {MAX_ANSWER_OBJECTS} objects are relayed"
    )]
    TooLarge(usize, usize),
    #[error("core is handling {} MiB of other large messages; call again in a moment", BUDGET_BYTES >> 20)]
    Busy,
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
}

/// A server's answer, parsed if its shape is within the caps and the budget has room now (an
/// answer cannot wait: its call is waiting for it).
pub fn answer(text: &str) -> Result<Value, Unrelayed> {
    let (values, objects) = json_shape(text.as_bytes());
    if values > MAX_ANSWER_VALUES || objects > MAX_ANSWER_OBJECTS {
        return Err(Unrelayed::TooLarge(values, objects));
    }
    let _room = match text.len() < SMALL {
        true => None,
        false => Some(BUDGET.try_acquire_many(units(text.len(), values, objects)).map_err(|_| Unrelayed::Busy)?),
    };
    serde_json::from_str(text).map_err(Unrelayed::NotJson)
}

/// The numeric `id` of a JSON-RPC answer, read without building anything else of it.
pub fn answer_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<u64>,
    }
    serde_json::from_str::<Id>(text).ok()?.id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_counted_outside_strings_only() {
        assert_eq!(json_shape(br#"{"a":[1,2,{"b":3}]}"#), (6, 2), "two objects, an array, three numbers");
        assert_eq!(
            json_shape(br#"{"text":"a, [b] {c} \" , ["}"#),
            (2, 1),
            "commas and brackets in strings do not count"
        );
        assert_eq!(json_shape(b"42"), (1, 0));
    }

    #[test]
    fn answers_past_the_shape_caps_are_not_parsed() {
        let many = format!("[{}0]", "0,".repeat(MAX_ANSWER_VALUES));
        assert!(matches!(answer(&many), Err(Unrelayed::TooLarge(..))));
        let answer_text = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{many}}}"#);
        assert_eq!(answer_id(&answer_text), Some(7), "the id, without parsing the rest into values");
        assert_eq!(answer("[1,2,3]").unwrap(), serde_json::json!([1, 2, 3]));
    }
}
