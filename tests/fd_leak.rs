//! Connect/reset churn leaks no file descriptors (own process: it counts
//! the whole process's open fds).
mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The fd count once it has stopped changing (the server closes its side of
/// a finished connection asynchronously).
fn settled_fds() -> usize {
    let mut last = open_fds();
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stable_since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = open_fds();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    last
}

#[test]
fn five_thousand_connect_reset_cycles_leave_the_fd_count_unchanged() {
    let server = TestServer::start();
    served(&server);
    let before = settled_fds();
    for i in 0..5000 {
        let mut s = server.raw();
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n");
        }
        reset(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(open_fds(), before);
    served(&server);
}
