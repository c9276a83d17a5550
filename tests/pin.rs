//! `--pin`: each reactor thread is bound to its own CPU, read back from
//! `/proc/PID/task/TID/status` (`Cpus_allowed_list`), and the pinned server
//! still echoes.

mod common;

use common::ServerProc;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Reactor thread name (`r0`, `r1`, …) → its `Cpus_allowed_list`, once `n`
/// reactor threads are there: a thread names and pins itself when it starts,
/// which may be just after the server logged that it listens.
fn reactor_cpus(pid: u32, n: usize, pinned: bool) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cpus = reactor_cpus_now(pid);
        let settled = cpus.len() == n && (!pinned || cpus.values().all(|l| !l.contains([',', '-'])));
        if settled || Instant::now() >= deadline {
            return cpus;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reactor_cpus_now(pid: u32) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let dir = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        let name = comm.trim().to_string();
        if !(name.starts_with('r') && name[1..].chars().all(|c| c.is_ascii_digit()) && name.len() > 1) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_string();
        out.insert(name, cpus);
    }
    out
}

/// The CPUs this test process may run on (what the server inherits).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

#[test]
fn pin_binds_each_reactor_thread_to_its_own_allowed_cpu() {
    let allowed = allowed_cpus();
    let n = allowed.len().min(4);
    let threads = n.to_string();
    let server = ServerProc::start(&["--threads", &threads, "--pin"]);
    server.served();
    let cpus = reactor_cpus(server.pid(), n, true);
    assert_eq!(cpus.len(), n, "reactor threads: {cpus:?}");
    for (i, cpu) in allowed.iter().take(n).enumerate() {
        assert_eq!(cpus[&format!("r{i}")], cpu.to_string(), "reactor r{i} is not pinned to CPU {cpu}: {cpus:?}");
    }
}

#[test]
fn without_pin_reactor_threads_may_run_on_every_allowed_cpu() {
    let allowed = allowed_cpus();
    if allowed.len() < 2 {
        eprintln!("one CPU allowed: pinned and unpinned look the same; nothing to tell apart");
        return;
    }
    let server = ServerProc::start(&["--threads", "2"]);
    server.served();
    let cpus = reactor_cpus(server.pid(), 2, false);
    assert_eq!(cpus.len(), 2, "reactor threads: {cpus:?}");
    for (name, list) in &cpus {
        assert_ne!(list, &allowed[0].to_string(), "{name} is bound to one CPU without --pin: {cpus:?}");
    }
}
