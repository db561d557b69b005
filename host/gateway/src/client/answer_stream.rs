//! Resumable answer streams for 2025-11-25 clients (SEP-1699). An answer that becomes an event
//! stream starts with a priming event (an id, no data); every message after it has an id too.
//! If the client's connection drops, the call goes on and what it sends is kept, so that a `GET
//! /mcp` with `Last-Event-ID` (in the same session) receives the rest — up to the answer — as the
//! revision asks. Kept for [`KEPT_FOR`] after the answer; at most [`MAX_KEPT`] messages a stream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// How long a finished stream can still be resumed.
const KEPT_FOR: Duration = Duration::from_secs(60);
/// Messages one stream keeps; notifications beyond it are dropped (never the answer).
const MAX_KEPT: usize = 256;
/// Resumable streams one replica keeps at once; beyond it answers are not resumable.
const MAX_STREAMS: usize = 10_000;

pub struct AnswerStream {
    session: String,
    messages: Mutex<Vec<Value>>,
    /// How many messages there are, and whether the answer is among them.
    progress: watch::Sender<(usize, bool)>,
}

#[derive(Default)]
pub struct AnswerStreams {
    streams: Mutex<HashMap<String, Arc<AnswerStream>>>,
}

impl AnswerStreams {
    /// Starts keeping what `messages` carries (ending with the answer) for `session`; returns the
    /// event stream for the client: the priming event, then every message. None when full.
    pub fn start(
        self: &Arc<Self>,
        session: &str,
        mut messages: mpsc::Receiver<Value>,
    ) -> Result<impl Stream<Item = Event> + use<>, mpsc::Receiver<Value>> {
        let id = format!("{:032x}", rand::random::<u128>());
        let stream = Arc::new(AnswerStream {
            session: session.to_string(),
            messages: Mutex::default(),
            progress: watch::channel((0, false)).0,
        });
        {
            let mut streams = self.streams.lock().unwrap();
            if streams.len() >= MAX_STREAMS {
                return Err(messages);
            }
            streams.insert(id.clone(), stream.clone());
        }
        let (streams, kept, key) = (Arc::downgrade(self), stream.clone(), id.clone());
        tokio::spawn(async move {
            while let Some(message) = messages.recv().await {
                let is_answer = message.get("method").is_none();
                let count = {
                    let mut all = kept.messages.lock().unwrap();
                    if all.len() < MAX_KEPT || is_answer {
                        all.push(message);
                    }
                    all.len()
                };
                kept.progress.send_replace((count, false));
            }
            let count = kept.messages.lock().unwrap().len();
            kept.progress.send_replace((count, true));
            tokio::time::sleep(KEPT_FOR).await;
            if let Some(streams) = streams.upgrade() {
                streams.streams.lock().unwrap().remove(&key);
            }
        });
        let priming = Event::default().id(format!("{id}:0")).data("");
        Ok(futures_util::stream::once(async move { priming }).chain(replay(id, stream, 0)))
    }

    /// The rest of a stream after `last_event_id`, for the session that started it.
    pub fn resume(&self, session: &str, last_event_id: &str) -> Option<impl Stream<Item = Event> + use<>> {
        let (id, seen) = last_event_id.rsplit_once(':')?;
        let seen: usize = seen.parse().ok()?;
        let stream = self.streams.lock().unwrap().get(id).cloned()?;
        (stream.session == session).then(|| replay(id.to_string(), stream, seen))
    }
}

/// Messages from index `from` on (event id = index + 1), waiting for more until the answer.
fn replay(id: String, stream: Arc<AnswerStream>, from: usize) -> impl Stream<Item = Event> {
    let progress = stream.progress.subscribe();
    futures_util::stream::unfold((from, progress), move |(next, mut progress)| {
        let (id, stream) = (id.clone(), stream.clone());
        async move {
            loop {
                let (count, done) = *progress.borrow_and_update();
                if next < count {
                    let message = stream.messages.lock().unwrap()[next].clone();
                    let event =
                        Event::default().id(format!("{id}:{}", next + 1)).event("message").data(message.to_string());
                    return Some((event, (next + 1, progress)));
                }
                if done || progress.changed().await.is_err() {
                    return None;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(event: &Event) -> String {
        format!("{event:?}")
    }

    #[tokio::test]
    async fn a_dropped_stream_is_resumed_after_the_last_event_seen_in_its_session_only() {
        let streams = Arc::new(AnswerStreams::default());
        let (tx, rx) = mpsc::channel(8);
        let mut first = Box::pin(streams.start("s1", rx).ok().unwrap());
        let priming = first.next().await.unwrap();
        let id = text(&priming).split("id: ").nth(1).unwrap().split(':').next().unwrap().to_string();
        tx.send(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}))
            .await
            .unwrap();
        assert!(text(&first.next().await.unwrap()).contains("progress"));
        drop(first); // the client's connection drops; the call goes on
        tx.send(json!({"jsonrpc": "2.0", "id": 7, "result": {}})).await.unwrap();
        drop(tx);
        assert!(streams.resume("other session", &format!("{id}:1")).is_none(), "another session cannot read it");
        let rest: Vec<Event> = streams.resume("s1", &format!("{id}:1")).unwrap().collect().await;
        assert_eq!(rest.len(), 1, "only what came after event 1: the answer");
        assert!(
            text(&rest[0]).contains("\\\"id\\\":7") && text(&rest[0]).contains(&format!("{id}:2")),
            "{}",
            text(&rest[0])
        );
        let all: Vec<Event> = streams.resume("s1", &format!("{id}:0")).unwrap().collect().await;
        assert_eq!(all.len(), 2);
    }
}
