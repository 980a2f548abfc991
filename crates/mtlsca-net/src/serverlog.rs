//! The servers' log (`serve`, `proxy`): one line per event on stderr, written by
//! one thread of its own. A handler only queues its line, so a stderr that
//! nobody reads (a supervisor's full pipe) never stalls a request: lines wait in
//! a bounded queue, and while it is full they are dropped and counted, and the
//! count is logged as soon as the writer catches up.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines that may wait for the writer (about 200 KiB of typical lines).
pub const QUEUE_LINES: usize = 1024;

enum Message {
    Line(String),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// The writer's queue; `None` when its thread could not be started (lines are
/// then written by the caller).
static QUEUE: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();
/// Lines dropped since the writer last said so.
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn queue() -> Option<&'static SyncSender<Message>> {
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE_LINES);
            std::thread::Builder::new()
                .name("mtlsca-log".into())
                .spawn(move || write_lines(rx))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Log one line (without its newline). Never blocks: a full queue drops it.
pub fn line(text: String) {
    let Some(q) = queue() else {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
        return;
    };
    match q.try_send(Message::Line(text)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(Message::Line(text))) => {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Wait up to `wait` for every line logged so far to be written (a server
/// calls it as it stops, before the process ends and takes the writer with it).
/// Gives up quietly: a stderr that is not read must not hold up the exit.
pub fn flush(wait: Duration) {
    let Some(q) = queue() else { return };
    let deadline = Instant::now() + wait;
    let (tx, rx) = sync_channel(1);
    let mut message = Message::Flush(tx);
    loop {
        match q.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                message = m;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return,
        }
    }
    let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

fn write_lines(rx: Receiver<Message>) {
    let mut err = std::io::stderr();
    for message in rx {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                err,
                "{} log: {dropped} line(s) dropped: stderr was not read fast enough",
                crate::timefmt::rfc3339(time::OffsetDateTime::now_utc())
            );
        }
        match message {
            Message::Line(text) => {
                let _ = writeln!(err, "{text}");
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
