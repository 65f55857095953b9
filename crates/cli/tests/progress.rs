//! What a person sees during `flash --pace modelled`: on a terminal (a tmux pane) the plan's
//! bar and the running operation's bar; through a pipe, plain lines and no bar. Skipped
//! (loudly) without tmux; `.ci/run` installs it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{home, BIN};
use modflash_testkit::interop;
use modflash_testkit::process::{output_within, text};

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    program: std::path::PathBuf,
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-L").arg(&self.socket).args(args);
        output_within(cmd, Duration::from_secs(30))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn a_terminal_shows_the_bars_and_a_pipe_plain_lines() {
    let Some(tools) = interop::tools(
        "a_terminal_shows_the_bars_and_a_pipe_plain_lines",
        &["tmux"],
        "apt-get install tmux",
    ) else {
        return;
    };
    let h = home();
    h.create("tty", "photon", "0.5.2");
    h.create("pipe", "photon", "0.5.2");
    let app = h.make_app("photon", "1.5.0");
    let app = app.to_str().unwrap();

    let tmux = Tmux {
        program: tools[0].clone(),
        socket: format!("modflash-test-{}", std::process::id()),
    };
    // The flash runs in a pane of a detached session; the shell stays so the pane outlives it.
    let command = format!(
        "env MODFLASH_HOME='{}' TERM=xterm-256color '{BIN}' flash '{app}' --device sim:tty --yes \
         --pace modelled; echo FLASH-EXIT=$?; sleep 60",
        h.path().display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "40",
        "-s",
        "flash",
        &command,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut saw_plan_bar, mut saw_operation_bar, mut screen) = (false, false, String::new());
    while Instant::now() < deadline {
        screen = text(&tmux.run(&["capture-pane", "-p", "-t", "flash"]).stdout);
        for line in screen.lines() {
            saw_plan_bar |= line.contains("plan [") && line.contains(" steps done ");
            saw_operation_bar |= line.contains("writing [") && line.contains("ETA");
        }
        if screen.contains("FLASH-EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(screen.contains("FLASH-EXIT=0"), "{screen}");
    assert!(screen.contains("Verified:"), "{screen}");
    assert!(
        saw_plan_bar,
        "no plan bar on the terminal; last screen:\n{screen}"
    );
    assert!(
        saw_operation_bar,
        "no write bar on the terminal; last screen:\n{screen}"
    );

    // Through a pipe: the same run in plain lines, nothing redrawn.
    let mut cmd = h.cmd();
    cmd.args([
        "flash", app, "--device", "sim:pipe", "--yes", "--pace", "modelled",
    ]);
    let started = Instant::now();
    let out = output_within(cmd, Duration::from_secs(90));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // It took the device's modelled time, as on the terminal.
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(stderr.contains("step 1/4: "), "{stderr}");
    assert!(stderr.contains("  writing "), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    assert!(
        !stderr.contains("ETA") && !stderr.contains("plan ["),
        "{stderr}"
    );
}
