//! Child processes in tests: never waited for longer than a limit, output read as text.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How often a running child is polled.
const POLL: Duration = Duration::from_millis(10);

/// Bytes a child wrote, as text (invalid UTF-8 replaced, so a failure message always prints).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` with no input and its output captured; a command still running after `limit`
/// is killed and the test fails.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let Some(status) = wait_until(&mut child, Instant::now() + limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {limit:?}");
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Waits for `child` for at most `limit`, killing it when it overstays; its exit status.
pub fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    match wait_until(child, Instant::now() + limit) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child
                .wait()
                .unwrap_or_else(|e| panic!("wait for a killed child: {e}"))
        }
    }
}

/// The child's exit status, or `None` when it still runs at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() > deadline => return None,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => panic!("wait for a child: {e}"),
        }
    }
}

/// Reads a pipe to its end on another thread, so a child never blocks on a full pipe.
fn read_in_background(
    pipe: Option<impl Read + Send + 'static>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn a_command_over_its_limit_fails_the_test() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 10"]);
        output_within(cmd, Duration::from_millis(100));
    }

    #[test]
    fn a_child_over_its_limit_is_killed() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 10"])
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = wait_within(&mut child, Duration::from_millis(100));
        assert!(!status.success());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
