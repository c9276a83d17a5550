//! The echo client's main loop: wsecho-client's default mode (send the time
//! every interval, log each echo), `--count N` (then close once every echo
//! is back) and `--stdin` (send each line, print each reply). Every source —
//! the socket reader, signals, stdin lines — feeds one [`Event`] channel, and
//! [`run`] reacts to events and deadlines in one thread; the binary only
//! spawns the sources and turns the [`Outcome`] into an exit status.

use super::{describe_close, Client, ClientError, Message, Sender};
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long we wait for the server to close after our Close, or to close
/// TCP after its own (gorilla's echo client "waits up to one second").
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// With `count`: how long we wait for the last echoes after the last send.
pub const ECHO_WAIT: Duration = Duration::from_secs(5);

/// What the main loop waits for: one channel from every source.
#[derive(Debug)]
pub enum Event {
    /// SIGINT or SIGTERM.
    Signal,
    /// A line of stdin (`--stdin`).
    Line(String),
    /// Stdin ended (`--stdin`).
    StdinEof,
    /// A message from the server (pings are answered by the library).
    Msg(Message),
    /// After the server's Close: whether it then closed TCP within the wait.
    TcpClosed(bool),
    /// Receiving failed; on a protocol error the library has sent our Close.
    Failed(ClientError),
}

/// Receive on `client` in a new thread, forwarding every message (and, after
/// the server's Close, whether it then closed TCP within [`CLOSE_WAIT`]) to
/// `tx`. Pings and Close are answered by [`Client::recv`] on the way.
pub fn spawn_reader(mut client: Client, tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        match client.recv() {
            Ok(Message::Close(c)) => {
                let _ = tx.send(Event::Msg(Message::Close(c)));
                // The library has answered (or we had sent Close first); RFC
                // 6455 §7.1.1: the server should now close TCP.
                let _ = client.set_read_timeout(Some(CLOSE_WAIT));
                let _ = tx.send(Event::TcpClosed(client.wait_for_eof()));
                return;
            }
            Ok(m) => {
                if tx.send(Event::Msg(m)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Event::Failed(e));
                return;
            }
        }
    })
}

/// What to send, and how replies are shown.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Send a message every this often; `None`: send nothing on a timer
    /// (`--stdin`: lines come as [`Event::Line`]).
    pub interval: Option<Duration>,
    /// Stop after this many messages, wait at most [`ECHO_WAIT`] for their
    /// echoes, then close.
    pub count: Option<u64>,
    /// The text to send; `None`: the current time ([`now_rfc3339`]).
    pub message: Option<String>,
    /// Write each reply as a line to the output instead of logging it.
    pub print_replies: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The closing handshake completed with 1000 (or no code), every echo
    /// `count` asked for came back, and no send failed.
    Normal,
    /// The server closed with another code, broke the protocol, dropped TCP,
    /// a send failed, or echoes were missing.
    Abnormal,
    /// A second [`Event::Signal`] while waiting for the server to close.
    Interrupted,
}

/// Run the main loop until the connection ends: send on `sender`, react to
/// everything that arrives on `rx`, write replies to `out` when
/// [`Settings::print_replies`] is set. `count == Some(0)` closes at once.
pub fn run<W: Write>(sender: Sender, rx: &mpsc::Receiver<Event>, settings: Settings, out: W) -> Outcome {
    let mut run = Run {
        sender,
        out,
        print_replies: settings.print_replies,
        message: settings.message,
        count: settings.count,
        interval: settings.interval,
        sent: 0,
        received: 0,
        next_tick: settings.interval.map(|i| Instant::now() + i),
        echo_deadline: None,
        close_deadline: None,
        server_close: None,
        trouble: false,
    };
    if run.count == Some(0) {
        run.start_close();
    }
    run.main_loop(rx)
}

/// The current time as RFC 3339 UTC with milliseconds (truncated):
/// `2024-02-29T23:59:59.123Z`, the text the default mode sends.
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// State of [`run`].
struct Run<W> {
    /// Sends our messages and our Close.
    sender: Sender,
    /// Where replies go with `print_replies`.
    out: W,
    /// `--stdin`: replies go to stdout, one per line, instead of the log.
    print_replies: bool,
    /// `--message`, else the current time is sent.
    message: Option<String>,
    /// `--count`: stop sending after this many.
    count: Option<u64>,
    /// Time between two sends ([`Settings::interval`]).
    interval: Option<Duration>,
    /// Messages sent so far.
    sent: u64,
    /// Data messages received so far.
    received: u64,
    /// When the ticker sends next (None: not ticking).
    next_tick: Option<Instant>,
    /// `--count`: all sent; the echoes must arrive before this.
    echo_deadline: Option<Instant>,
    /// A Close is under way (ours or the server's): exit at this instant at
    /// the latest.
    close_deadline: Option<Instant>,
    /// The server's Close, once received.
    server_close: Option<Option<(u16, String)>>,
    /// Something went wrong that makes the exit status non-zero unless the
    /// server's close code says otherwise (echoes missing, a send failed).
    trouble: bool,
}

impl<W: Write> Run<W> {
    fn main_loop(&mut self, rx: &mpsc::Receiver<Event>) -> Outcome {
        loop {
            let deadline = [self.next_tick, self.echo_deadline, self.close_deadline].into_iter().flatten().min();
            let event = match deadline {
                None => rx.recv().ok(),
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => Some(ev),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(code) = self.on_timer() {
                            return code;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(event) = event else {
                // Every source has ended; cannot happen while the reader runs.
                return self.exit_status();
            };
            if let Some(code) = self.on_event(event) {
                return code;
            }
        }
    }

    /// A deadline passed; `Some(status)` to exit.
    fn on_timer(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        if self.close_deadline.is_some_and(|d| d <= now) {
            match &self.server_close {
                None => log::warn!("the server did not answer our Close within {CLOSE_WAIT:?}"),
                Some(_) => log::warn!("the server did not close TCP within {CLOSE_WAIT:?}"),
            }
            return Some(self.exit_status());
        }
        if self.echo_deadline.is_some_and(|d| d <= now) {
            log::warn!("received {} of {} echoes within {ECHO_WAIT:?}", self.received, self.sent);
            self.trouble = true;
            self.start_close();
            return None;
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            let text = match &self.message {
                Some(m) => m.clone(),
                None => now_rfc3339(),
            };
            if let Err(e) = self.sender.send_text(&text) {
                self.send_failed(e);
                return None;
            }
            self.sent += 1;
            if self.count.is_some_and(|n| self.sent >= n) {
                self.next_tick = None;
                self.echo_deadline = Some(now + ECHO_WAIT);
                self.close_if_all_echoed();
            } else {
                // Keep the cadence, but never burst to catch up.
                self.next_tick = self.interval.map(|i| (self.next_tick.unwrap_or(now) + i).max(now));
            }
        }
        None
    }

    /// `Some(status)` to exit.
    fn on_event(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Signal => {
                if self.close_deadline.is_some() {
                    log::warn!("second interrupt: exiting now");
                    return Some(Outcome::Interrupted);
                }
                log::info!("interrupt");
                self.start_close();
            }
            Event::Line(line) => {
                if self.close_deadline.is_none() {
                    match self.sender.send_text(&line) {
                        Ok(()) => self.sent += 1,
                        Err(e) => self.send_failed(e),
                    }
                }
            }
            Event::StdinEof => self.start_close(),
            Event::Msg(Message::Text(t)) => {
                self.received += 1;
                if self.print_replies {
                    let _ = writeln!(self.out, "{t}").and_then(|_| self.out.flush());
                } else {
                    log::info!("recv: {t}");
                }
                self.close_if_all_echoed();
            }
            Event::Msg(Message::Binary(b)) => {
                self.received += 1;
                if self.print_replies {
                    let _ = writeln!(self.out, "{}", String::from_utf8_lossy(&b)).and_then(|_| self.out.flush());
                } else {
                    log::info!("recv: ({} bytes binary) {:02x?}", b.len(), &b[..b.len().min(32)]);
                }
                self.close_if_all_echoed();
            }
            Event::Msg(Message::Ping(p)) => log::debug!("ping ({} bytes), answered", p.len()),
            Event::Msg(Message::Pong(p)) => log::debug!("pong ({} bytes)", p.len()),
            Event::Msg(Message::Close(c)) => {
                let text = describe_close(&c);
                let normal = !matches!(&c, Some((code, _)) if *code != 1000);
                if self.close_deadline.is_some() {
                    // We asked first; this is the server's answer.
                    if normal {
                        log::info!("server closed: {text}");
                    } else {
                        log::error!("server closed: {text}");
                    }
                } else {
                    if normal {
                        log::info!("server closed the connection: {text}");
                    } else {
                        log::error!("server closed the connection: {text}");
                    }
                    self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
                }
                self.server_close = Some(c);
                self.next_tick = None;
                self.echo_deadline = None;
            }
            Event::TcpClosed(eof) => {
                if !eof {
                    log::warn!("the server did not close TCP within {CLOSE_WAIT:?}");
                }
                return Some(self.exit_status());
            }
            Event::Failed(e) => {
                match &e {
                    ClientError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                        if self.close_deadline.is_some() && self.server_close.is_none() {
                            log::warn!("server closed TCP without answering our Close");
                            return Some(self.exit_status());
                        }
                        log::error!("server closed TCP without a Close frame (1006, abnormal closure)");
                    }
                    ClientError::Protocol(p) => {
                        log::error!("{e}; sent Close {}", describe_close(&Some((p.close_code().0, String::new()))))
                    }
                    _ => log::error!("connection error: {e}"),
                }
                return Some(Outcome::Abnormal);
            }
        }
        None
    }

    /// `--count`: every message sent has come back; close.
    fn close_if_all_echoed(&mut self) {
        if let Some(n) = self.count {
            if self.sent >= n && self.received >= n {
                self.start_close();
            }
        }
    }

    /// Send Close 1000 once and give the server [`CLOSE_WAIT`] to close.
    fn start_close(&mut self) {
        self.next_tick = None;
        self.echo_deadline = None;
        if self.close_deadline.is_some() {
            return;
        }
        if let Err(e) = self.sender.send_close(1000, "") {
            log::warn!("sending Close failed: {e}");
        }
        self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
    }

    /// A send failed: stop sending and give the reader a moment to say why.
    fn send_failed(&mut self, e: io::Error) {
        log::error!("send failed: {e}");
        self.trouble = true;
        self.next_tick = None;
        self.echo_deadline = None;
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
        }
    }

    /// Normal unless the server closed with an error code, or (with no close code
    /// from the server) something else went wrong.
    fn exit_status(&self) -> Outcome {
        match &self.server_close {
            Some(Some((code, _))) if *code != 1000 => Outcome::Abnormal,
            Some(_) if self.received < self.count.unwrap_or(0) => Outcome::Abnormal,
            Some(_) => Outcome::Normal,
            None if self.trouble => Outcome::Abnormal,
            None => Outcome::Normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_utc_with_milliseconds() {
        let before = jiff::Timestamp::now();
        let s = now_rfc3339();
        let after = jiff::Timestamp::now();
        // 2024-02-29T23:59:59.123Z
        assert_eq!(s.len(), 24, "{s}");
        for (i, c) in s.char_indices() {
            match i {
                4 | 7 => assert_eq!(c, '-', "{s}"),
                10 => assert_eq!(c, 'T', "{s}"),
                13 | 16 => assert_eq!(c, ':', "{s}"),
                19 => assert_eq!(c, '.', "{s}"),
                23 => assert_eq!(c, 'Z', "{s}"),
                _ => assert!(c.is_ascii_digit(), "{s}"),
            }
        }
        let t: jiff::Timestamp = s.parse().unwrap();
        // Truncated to the millisecond, so at most 1 ms before `before`.
        assert!(t <= after && before.duration_since(t) < jiff::SignedDuration::from_millis(1), "{s}");
    }
}
