//! The reactor's per-connection driver over an in-memory stream, on every
//! `cargo test`: the `reactor_driver` fuzz target's scenario
//! (`fuzz/src/driver_scenario.rs`, included by path so both run the same
//! script interpreter and checks) over a few hundred deterministic random
//! scripts and the committed seeds. See that file for the script layout and
//! the invariants.

#[allow(dead_code)]
#[path = "../fuzz/src/driver_scenario.rs"]
mod driver_scenario;
#[allow(dead_code)]
#[path = "../fuzz/src/echo_view.rs"]
mod echo_view;

use driver_scenario::{run, Report};
use std::path::Path;

/// xorshift64*, seeded: the same scripts on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A random script: random config bytes, then operations whose tags lean on
/// the ones that move bytes (arrivals, write room), so most scripts get past
/// the handshake and echo something.
fn script(rng: &mut Rng) -> Vec<u8> {
    // Byte 2: an upgrade request; mostly a patient client and long timeouts.
    let mut c2 = rng.next() as u8 & !0x03;
    if rng.next() % 4 != 0 {
        c2 &= !0x24;
    }
    let mut s = vec![rng.next() as u8, rng.next() as u8, c2];
    if rng.next() % 2 == 0 {
        s.extend_from_slice(&[12, 5, 0]); // the request arrives in one piece
    }
    let ops = 10 + rng.next() % 120;
    for _ in 0..ops {
        let r = rng.next();
        let tag = match r % 10 {
            0..=2 => (r >> 8) % 7,      // a message
            3..=5 => 12 + (r >> 8) % 6, // an arrival
            6 => 18 + (r >> 8) % 3,     // write room
            _ => match (r >> 8) % 32 {
                22 if r >> 40 & 7 != 0 => 30, // the client's FIN: mostly left to the final drain
                t => t,                       // anything
            },
        };
        s.push(tag as u8);
        s.push((r >> 16) as u8);
        s.push((r >> 24) as u8); // read by some operations, an operation of its own otherwise
    }
    s
}

#[test]
fn random_scripts_keep_memory_bounded_and_lose_no_echo() {
    let mut rng = Rng(0x5EED_0FD8_17E5);
    let mut total = Report::default();
    let (mut upgraded, mut messages, mut paused, mut pool_waited, mut streamed) = (0, 0, 0, 0, 0);
    let (mut eof_backlog, mut closed, mut complete) = (0, 0, 0);
    const RUNS: usize = 400;
    for i in 0..RUNS {
        let data = script(&mut rng);
        let r = std::panic::catch_unwind(|| run(&data)).unwrap_or_else(|_| {
            panic!("script {i} failed; input: {data:02x?}");
        });
        if std::env::var_os("DRIVER_DEBUG").is_some() {
            println!("{i}: status {:?} dropped {:?} cut {}", r.status, r.dropped, r.cut_short);
        }
        upgraded += r.upgraded as usize;
        messages += r.messages;
        paused += r.paused as usize;
        pool_waited += r.pool_waited as usize;
        streamed += r.streamed as usize;
        eof_backlog += r.eof_with_backlog as usize;
        closed += r.closed as usize;
        complete += (r.upgraded && !r.cut_short) as usize;
        total.pool_excess = total.pool_excess.max(r.pool_excess);
    }
    println!(
        "{RUNS} scripts: {upgraded} upgraded ({complete} not cut short), {messages} messages echoed, \
         {paused} paused, {pool_waited} waited for the pool, {streamed} streamed a frame, \
         {eof_backlog} half-closed with a backlog, {closed} ended with a Close; \
         pool at most {} bytes over its cap",
        total.pool_excess
    );
    // The scripts must reach the paths under test, or the checks prove nothing.
    assert!(complete >= RUNS / 4, "only {complete} scripts ran to a complete echo");
    assert!(messages >= RUNS, "only {messages} messages echoed");
    for (what, n) in [
        ("paused", paused),
        ("waited for the pool", pool_waited),
        ("streamed a frame", streamed),
        ("half-closed with a backlog", eof_backlog),
        ("ended with a Close", closed),
    ] {
        assert!(n >= 5, "only {n} scripts {what}");
    }
}

/// Replays the committed seeds. Debugging aid: with `DRIVER_INPUT=<file>`
/// (e.g. a fuzz artifact) it replays that input first and prints what it
/// exercised; `DRIVER_TRACE=1` prints every step:
/// `DRIVER_INPUT=fuzz/artifacts/reactor_driver/crash-… cargo test --test
/// driver_in_memory -- --nocapture committed_seeds`
#[test]
fn committed_seeds_and_regressions_replay_cleanly() {
    if let Some(path) = std::env::var_os("DRIVER_INPUT") {
        let data = std::fs::read(path).unwrap();
        println!("{:?}", run(&data));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/reactor_driver");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/reactor_driver") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("seed {} fails", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

// ---------------------------------------------------------------------------
// Named regressions, driven step by step through the same in-memory reactor.

use wsecho::proto::frame::{write_frame, OpCode};
use wsecho::server::testing::{mem_pair, Driver, MemStream, Peer, Readiness};
use wsecho::server::{Config, DropReason};

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Deliver pending events and run the queue until nothing moves.
fn settle(d: &mut Driver<MemStream>, peer: &Peer) {
    for _ in 0..10_000 {
        let mut moved = false;
        if let Some(ev) = peer.take_event(false) {
            d.event(ev);
            moved = true;
        }
        moved |= d.run_queue();
        d.wake_pool_waiters();
        d.advance(std::time::Duration::ZERO);
        if !moved && !d.queued() && !peer.has_event() {
            return;
        }
    }
    panic!("did not settle");
}

/// A connection past its upgrade, keepalive off (so no timer can rescue a
/// stuck connection).
fn upgraded(mut cfg: Config) -> (Driver<MemStream>, Peer) {
    cfg.idle_timeout = None;
    let (stream, peer) = mem_pair();
    let mut d = Driver::new(cfg, stream);
    peer.send(UPGRADE);
    settle(&mut d, &peer);
    assert!(peer.written().starts_with(b"HTTP/1.1 101"), "no 101");
    (d, peer)
}

fn binary_frames(count: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..count {
        write_frame(&mut v, true, 0, OpCode::Binary, Some([1, 2, 3, i as u8]), &vec![i as u8; len]);
    }
    v
}

/// Issue 10 fuzzing: a connection whose read-budget turn ran out with the
/// peer's FIN already reported came back from the run queue reading only
/// to the first short read, never reached the EOF, and (keepalive off)
/// stayed open forever.
#[test]
fn issue_10_fin_reported_with_more_than_one_budget_of_data_closes_the_connection() {
    // As with the defaults (256 KiB budget, 64 KiB reads): the event's turn
    // reads a full budget, the turn from the run queue ends on a short read
    // smaller than the budget.
    let cfg = Config { read_budget: 8192, ..Config::default() };
    let (mut d, peer) = upgraded(cfg);
    let budget = d.config().read_budget;
    assert!(d.readbuf_len() >= budget);
    let frames = binary_frames((d.readbuf_len() + budget / 2) / 1000, 1000);
    assert!(frames.len() > d.readbuf_len() && frames.len() < d.readbuf_len() + budget);
    peer.send(&frames);
    peer.finish();
    settle(&mut d, &peer);
    assert_eq!(peer.unread(), 0);
    assert!(
        peer.server_closed(),
        "connection still open after the client's FIN: {:?}",
        d.conn().map(|c| c.phase_name())
    );
    assert_eq!(d.dropped().map(|x| x.0), Some(DropReason::PeerEofWhileOpen));
}

/// Issue 10 fuzzing: the FIN reported while reading was paused for room in
/// the write-chunk pool was lost the same way once the pool had room.
#[test]
fn issue_10_fin_reported_while_waiting_for_the_pool_closes_the_connection() {
    let cfg = Config { write_chunk_size: 64, max_pool_bytes: 192, ..Config::default() };
    let (mut d, peer) = upgraded(cfg);
    d.others_queue(128); // other connections fill the pool: no room to read
    let frames = binary_frames(3, 1000);
    peer.send(&frames);
    peer.finish();
    settle(&mut d, &peer);
    assert!(d.waiting_for_pool(), "the test needs the connection to wait for the pool");
    d.others_drain();
    settle(&mut d, &peer);
    assert_eq!(peer.unread(), 0);
    assert!(peer.server_closed(), "connection still open after the client's FIN");
    let echoed = peer.written().len();
    assert!(echoed > 3 * 1000, "echo incomplete: {echoed} bytes");
}

/// Issue 10 fuzzing: with read and write readiness reported separately
/// (kqueue), a FIN that arrived during a backpressure pause was lost when
/// the backlog drained.
#[test]
fn issue_10_fin_reported_during_backpressure_closes_the_connection_once_drained() {
    let cfg = Config { backpressure_bytes: 100, ..Config::default() };
    let (mut d, peer) = upgraded(cfg);
    peer.set_write_room(0);
    peer.send(&binary_frames(1, 500));
    settle(&mut d, &peer);
    assert!(d.conn().unwrap().read_paused(), "the test needs a backpressure pause");
    peer.send(&binary_frames(2, 100));
    peer.finish();
    settle(&mut d, &peer);
    peer.set_write_room(usize::MAX);
    d.event(Readiness { writable: true, ..Readiness::default() });
    settle(&mut d, &peer);
    assert!(peer.server_closed(), "connection still open after the client's FIN");
}

/// Issue 10: a peer that never reads. The server stops reading once its
/// queue passes `backpressure_bytes`: of 1 MiB offered, it reads at most the
/// cap plus one read buffer, holds at most that queued, and the backpressure
/// deadline then closes the connection 1008.
#[test]
fn issue_10_write_side_blocked_forever_stops_reading_and_bounds_memory() {
    let cfg = Config { backpressure_bytes: 8192, ..Config::default() };
    let (mut d, peer) = upgraded(cfg);
    peer.set_write_room(0);
    let bound = d.config().backpressure_bytes + d.readbuf_len() + 64;
    let frames = binary_frames(1024, 1000);
    for piece in frames.chunks(4096) {
        peer.send(piece);
        settle(&mut d, &peer);
        let conn = d.conn().expect("still open");
        assert!(conn.out.len() <= bound, "{} bytes queued > {bound}", conn.out.len());
    }
    let read = peer.bytes_read() as usize - UPGRADE.len();
    assert!(d.conn().unwrap().read_paused(), "reading not paused");
    assert!(read <= bound, "read {read} of {} bytes while nothing could be written", frames.len());
    assert!(peer.unread() >= frames.len() - bound);
    let timeout = d.config().backpressure_timeout;
    d.advance(timeout + std::time::Duration::from_secs(1));
    settle(&mut d, &peer);
    peer.set_write_room(usize::MAX);
    d.event(Readiness { writable: true, ..Readiness::default() });
    settle(&mut d, &peer);
    let written = peer.written();
    assert!(written.ends_with(&[0x88, 0x02, 0x03, 0xF0]), "no Close 1008 at the end");
}
