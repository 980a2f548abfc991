//! Copying both ways between two streams, with an idle timeout that counts
//! traffic in either direction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BUF: usize = 64 * 1024;

/// When either direction last moved data, in ms since `epoch`.
pub(crate) struct Activity {
    epoch: Instant,
    last: AtomicU64,
    idle: Duration,
}

impl Activity {
    pub(crate) fn new(idle: Duration) -> Activity {
        Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            idle,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether nothing moved either way for the idle timeout.
    fn expired(&self) -> bool {
        let idle_ms = u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
        self.now_ms()
            .saturating_sub(self.last.load(Ordering::Relaxed))
            >= idle_ms
    }

    /// Run an I/O step; time out only when the whole connection is idle.
    pub(crate) async fn io<T, F>(&self, step: F) -> std::io::Result<T>
    where
        F: std::future::Future<Output = std::io::Result<T>>,
    {
        let mut step = std::pin::pin!(step);
        loop {
            match tokio::time::timeout(self.idle, step.as_mut()).await {
                Ok(r) => return r,
                Err(_) if self.expired() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("idle for {:?}", self.idle),
                    ))
                }
                Err(_) => continue,
            }
        }
    }
}

/// Copy `r` to `w` until EOF, then shut `w` down. Returns the bytes copied.
pub(crate) async fn copy<R, W>(r: &mut R, w: &mut W, act: &Activity) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = act.io(r.read(&mut buf)).await?;
        if n == 0 {
            break;
        }
        act.io(w.write_all(&buf[..n])).await?;
        act.touch();
        total += n as u64;
    }
    let _ = w.shutdown().await;
    Ok(total)
}

/// Copy both ways until both sides are done, either fails, or the link is idle.
pub(crate) async fn pipe<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let act = Activity::new(idle);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let _ = tokio::try_join!(copy(&mut ar, &mut bw, &act), copy(&mut br, &mut aw, &act));
}
