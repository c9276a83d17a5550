//! The Autobahn TestSuite fuzzingserver's client protocol, on [`Client`]:
//! ask `/getCaseCount`, run every case at `/runCase?case=N&agent=A` as an
//! echo peer, then ask `/updateReports?agent=A` to write the reports.
//! `wsecho-client --autobahn URL` runs it (see `autobahn/run-client.sh`).

use super::{connect_error, describe_close, Client, ClientError, ClientOptions, Message};
use std::fmt;
use std::time::{Duration, Instant};

/// A case (or control connection) that sends nothing for this long is
/// abandoned.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long we wait for the server to drop TCP after the closing handshake
/// (or after we failed the connection); RFC 6455 §7.1.1 has the server
/// close first.
pub const CASE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why a run stopped before the reports were written. A failing *case* does
/// not stop a run: the fuzzingserver records it.
#[derive(Debug)]
pub enum AutobahnError {
    /// Could not connect to or upgrade at `url`.
    Connect {
        /// The URL we tried.
        url: String,
        /// Why it failed.
        error: ClientError,
    },
    /// `/getCaseCount` or `/updateReports` broke off.
    Control {
        /// `getCaseCount` or `updateReports`.
        what: &'static str,
        /// Why.
        error: ClientError,
    },
    /// `/getCaseCount` sent this text, which is not a number.
    BadCount(String),
    /// `/getCaseCount` closed without sending the count.
    NoCount,
}

impl fmt::Display for AutobahnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutobahnError::Connect { url, error } => f.write_str(&connect_error(url, error)),
            AutobahnError::Control { what, error } => write!(f, "{what}: {error}"),
            AutobahnError::BadCount(t) => write!(f, "getCaseCount: not a number: {t:?}"),
            AutobahnError::NoCount => f.write_str("getCaseCount: the server closed without sending the count"),
        }
    }
}

impl std::error::Error for AutobahnError {}

fn connect(url: String, opts: &ClientOptions) -> Result<Client, AutobahnError> {
    Client::connect(&url, opts).map_err(|error| AutobahnError::Connect { url, error })
}

/// Run every case at `base` (`ws://127.0.0.1:PORT`) as `agent`, then have
/// the server update its reports. Returns the number of cases run.
pub fn run(base: &str, agent: &str, opts: &ClientOptions) -> Result<u32, AutobahnError> {
    let base = base.trim_end_matches('/');
    let count = case_count(base, opts)?;
    log::info!("autobahn: {count} cases at {base} (agent {agent})");
    let started = Instant::now();
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        log::info!("case {case}/{count}");
        match Client::connect(&url, opts) {
            Ok(client) => echo_case(client, case),
            Err(e) => log::warn!("case {case}: {}", connect_error(&url, &e)),
        }
    }
    log::info!("ran {count} cases in {:.1?}", started.elapsed());
    let mut client = connect(format!("{base}/updateReports?agent={agent}"), opts)?;
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    loop {
        match client.recv() {
            Ok(Message::Close(_)) => {
                let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
                client.wait_for_eof();
                break;
            }
            Ok(_) => {}
            Err(error) => return Err(AutobahnError::Control { what: "updateReports", error }),
        }
    }
    log::info!("reports updated");
    Ok(count)
}

/// `/getCaseCount`: a connection whose one text message is the count.
fn case_count(base: &str, opts: &ClientOptions) -> Result<u32, AutobahnError> {
    let mut client = connect(format!("{base}/getCaseCount"), opts)?;
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    let mut count = None;
    loop {
        match client.recv() {
            Ok(Message::Text(t)) => match t.trim().parse::<u32>() {
                Ok(n) => count = Some(n),
                Err(_) => return Err(AutobahnError::BadCount(t)),
            },
            Ok(Message::Close(_)) => {
                let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
                client.wait_for_eof();
                break;
            }
            Ok(_) => {}
            // Having the count, a connection that then breaks off is enough.
            Err(_) if count.is_some() => break,
            Err(error) => return Err(AutobahnError::Control { what: "getCaseCount", error }),
        }
    }
    count.ok_or(AutobahnError::NoCount)
}

/// One case: echo every message with its type until the server closes.
/// `recv` answers pings and Close, validates UTF-8 and, on a protocol error,
/// sends our Close with the right code; then we only wait for the server to
/// drop TCP.
fn echo_case(mut client: Client, case: u32) {
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    loop {
        let sent = match client.recv() {
            Ok(Message::Text(t)) => client.send_text(&t),
            Ok(Message::Binary(b)) => client.send_binary(&b),
            Ok(Message::Ping(_) | Message::Pong(_)) => Ok(()),
            Ok(Message::Close(c)) => {
                log::debug!("case {case}: server closed: {}", describe_close(&c));
                break;
            }
            Err(ClientError::Protocol(e)) => {
                log::debug!("case {case}: failed the connection: {e}");
                break;
            }
            Err(e) => {
                log::debug!("case {case}: {e}");
                return;
            }
        };
        if let Err(e) = sent {
            // Keep reading: the server's Close (or a reset) ends the case.
            log::debug!("case {case}: send failed: {e}");
        }
    }
    let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
    if !client.wait_for_eof() {
        log::debug!("case {case}: server did not close TCP within {CASE_CLOSE_WAIT:?}");
    }
}
