//! Journal mode of the usage file (SPEC §6, issue 19) through the real binary: a large state is
//! written as a base now and then and one synced line per save holding only what changed; a
//! SIGKILL loses at most the last second, a torn last line is left out, a corrupt line is moved
//! aside, lines of an older base are ignored, SIGTERM compacts the journal into the file, and no
//! raw key is in either file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Fingerprints that are not in the pool: their history is kept (and makes the state large).
const HISTORY_KEYS: usize = 400;

fn base(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("usage.json")).unwrap()).expect("the base is whole JSON")
}

fn journal_lines(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("usage.json.journal")).unwrap_or_default();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn start(dir: &Path) -> (std::process::Child, String, std::thread::JoinHandle<Vec<String>>, MockUpstream) {
    let mock = MockUpstream::start(&KEYS);
    let (child, addr, reader) = spawn(&mock, dir, &["--log-dir", "", "--reset-timezone", "UTC"]);
    (child, addr, reader, mock)
}

fn generate_n(addr: &str, n: usize) {
    let url = format!("http://{addr}/v1beta/models/gemini-2.5-flash:generateContent");
    for _ in 0..n {
        let a = send("POST", &url, &[("x-goog-api-key", TOKEN)], generate_body().to_string().as_bytes());
        assert_eq!(a.status, 200, "{}", a.text());
    }
}

fn status_requests(addr: &str) -> u64 {
    let a = send("GET", &format!("http://{addr}/status"), &[("x-goog-api-key", TOKEN)], b"");
    a.json()["totals"]["requests"].as_u64().unwrap()
}

/// Wait until the journal lines hold `n` requests in all (the last record of each key counts).
/// Today's requests that journal `lines` hold: the last record of each key counts.
fn requests_in(lines: impl IntoIterator<Item = Value>) -> u64 {
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for line in lines {
        for (fp, record) in line["keys"].as_object().into_iter().flatten() {
            let r = record["models"].as_object().unwrap().values().map(|m| m["requests"].as_u64().unwrap());
            last.insert(fp.clone(), r.sum());
        }
    }
    last.values().sum()
}

/// Wait until the journal lines hold `n` requests in all.
fn journaled(dir: &Path, n: u64) {
    eventually(Duration::from_secs(10), "the journal holds the requests", || {
        requests_in(journal_lines(dir)) == n
    });
}

/// A proxy on a large state, once its first save has made the file a base in journal mode.
fn start_in_journal_mode(
    dir: &Path,
) -> (std::process::Child, String, std::thread::JoinHandle<Vec<String>>, MockUpstream) {
    large_usage_file(dir, HISTORY_KEYS);
    let started = start(dir);
    eventually(Duration::from_secs(10), "a base in journal mode", || {
        base(dir)["journal"].is_string() && dir.join("usage.json.journal").exists()
    });
    started
}

fn no_raw_key_in(dir: &Path) {
    for name in ["usage.json", "usage.json.journal"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        for k in KEYS {
            assert!(!text.contains(k), "a raw key in {name}");
        }
    }
}

#[test]
fn a_large_state_is_journaled_line_by_line_survives_sigkill_and_is_compacted_on_sigterm() {
    let dir = temp_dir("journal");
    // The first save writes the whole state as a base that names its journal.
    let (mut child, addr, _reader, _mock) = start_in_journal_mode(&dir);
    let id = base(&dir)["journal"].as_str().unwrap().to_string();
    let base_bytes = std::fs::metadata(dir.join("usage.json")).unwrap().len();
    assert!(base_bytes > 64 * 1024, "{base_bytes}");
    generate_n(&addr, 7);
    journaled(&dir, 7);
    let lines = journal_lines(&dir);
    for line in &lines {
        assert_eq!(line["base"], id.as_str());
        // Only what changed: at most the pool's three keys, never the history.
        assert!(line["keys"].as_object().map_or(0, |k| k.len()) <= 3, "{line}");
        assert!(line.get("history").is_none(), "{line}");
    }
    let journal_bytes = std::fs::metadata(dir.join("usage.json.journal")).unwrap().len();
    assert!(journal_bytes < 8 * 1024, "{journal_bytes} bytes of journal for 7 requests");
    // The base was not rewritten for them.
    assert_eq!(base(&dir)["journal"], id.as_str());
    assert_eq!(requests_by_usage_command(&dir, "UTC"), 7);
    no_raw_key_in(&dir);

    signal(&child, "-KILL");
    let _ = child.wait();
    let (mut child, addr, reader, _mock) = start(&dir);
    assert_eq!(status_requests(&addr), 7, "the journal's requests are back after a SIGKILL");
    generate_n(&addr, 2);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    drop(reader.join());
    // SIGTERM compacted the journal into a new base.
    let file = base(&dir);
    assert_ne!(file["journal"], id.as_str());
    assert!(journal_lines(&dir).is_empty());
    let on_disk: u64 = file["keys"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|k| k["models"].as_object().unwrap().values())
        .map(|m| m["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(on_disk, 9);
    assert_eq!(file["history"].as_object().unwrap().len(), 30, "the 30 days of history are kept");
    assert_eq!(
        file["history"].as_object().unwrap().values().next().unwrap().as_object().unwrap().len(),
        HISTORY_KEYS
    );
    no_raw_key_in(&dir);
}

#[test]
fn a_torn_last_line_is_left_out_and_a_corrupt_line_is_moved_aside() {
    let dir = temp_dir("journal-torn");
    let (mut child, addr, _reader, _mock) = start_in_journal_mode(&dir);
    generate_n(&addr, 3);
    journaled(&dir, 3);
    signal(&child, "-KILL");
    let _ = child.wait();

    // A crash in the middle of an append: half a line at the end.
    let journal = dir.join("usage.json.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let good = bytes.clone();
    bytes.extend_from_slice(b"{\"base\":\"");
    std::fs::write(&journal, &bytes).unwrap();
    let (mut child, addr, reader, _mock) = start(&dir);
    assert_eq!(status_requests(&addr), 3);
    signal(&child, "-KILL");
    let _ = child.wait();
    let log = reader.join().unwrap().join("\n");
    assert!(log.contains("torn last line"), "{log}");

    // A bad line before good ones: the lines before it count, the journal is moved aside.
    let mut lines: Vec<&[u8]> = good.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let last = lines.pop().unwrap();
    let mut bytes = lines.join(&b'\n');
    bytes.extend_from_slice(b"\nnot a journal line\n");
    bytes.extend_from_slice(last);
    bytes.push(b'\n');
    std::fs::write(&journal, &bytes).unwrap();
    let before_bad = requests_in(lines.iter().map(|l| serde_json::from_slice(l).unwrap()));
    let (mut child, addr, reader, _mock) = start(&dir);
    assert_eq!(status_requests(&addr), before_bad);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let log = reader.join().unwrap().join("\n");
    assert!(log.contains("USAGE JOURNAL CORRUPT"), "{log}");
    let aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("usage.json.journal.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn lines_of_an_older_base_are_not_applied_twice() {
    let dir = temp_dir("journal-stale");
    let (mut child, addr, _reader, _mock) = start_in_journal_mode(&dir);
    generate_n(&addr, 4);
    journaled(&dir, 4);
    let old_lines = std::fs::read(dir.join("usage.json.journal")).unwrap();
    // SIGTERM writes a new base with the 4 requests; then the old lines come back, as if the
    // compaction had crashed between writing the base and emptying the journal.
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    std::fs::write(dir.join("usage.json.journal"), &old_lines).unwrap();
    assert_eq!(requests_by_usage_command(&dir, "UTC"), 4);
    let (mut child, addr, _reader, _mock) = start(&dir);
    assert_eq!(status_requests(&addr), 4);
    generate_n(&addr, 1);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(requests_by_usage_command(&dir, "UTC"), 5);
}

#[test]
fn a_small_state_stays_one_json_file() {
    let dir = temp_dir("journal-small");
    let (mut child, addr, _reader, _mock) = start(&dir);
    generate_n(&addr, 2);
    eventually(Duration::from_secs(10), "the file holds the requests", || {
        dir.join("usage.json").exists() && requests_on_disk(&dir) == 2
    });
    assert!(base(&dir).get("journal").is_none());
    assert!(!dir.join("usage.json.journal").exists());
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_reload_of_the_key_file_writes_a_new_base_with_the_new_key() {
    let dir = temp_dir("journal-reload");
    let (mut child, addr, _reader, _mock) = start_in_journal_mode(&dir);
    generate_n(&addr, 2);
    journaled(&dir, 2);
    let id = base(&dir)["journal"].as_str().unwrap().to_string();
    // Two of the three keys stay; a fourth joins (the mock refuses it, which does not matter here).
    let added = "AIzaSyTESTKEY00000000000000000000000000D";
    std::fs::write(dir.join("key.txt"), format!("{}\n{}\n{added}\n", KEYS[0], KEYS[1])).unwrap();
    signal(&child, "-HUP");
    eventually(Duration::from_secs(10), "a new base after the reload", || {
        base(&dir)["journal"].as_str().is_some_and(|new| new != id)
    });
    let file = base(&dir);
    let keys = file["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.values().any(|k| k["masked"] == "AIza…000D"), "{keys:?}");
    assert!(journal_lines(&dir).is_empty(), "a new base starts an empty journal");
    assert!(!std::fs::read_to_string(dir.join("usage.json")).unwrap().contains(added));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}
