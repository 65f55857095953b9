//! What a shell sees of modflash: completion scripts (bash's is loaded and asked to complete),
//! the man pages, `--version` with its commit, and the output options (`--color`, `-q`, `-v`,
//! their environment variables).

mod common;

use std::process::Command;

use common::home;
use modflash_testkit::process::{output_within, text};
use modflash_testkit::{fixture_path, interop};

#[test]
fn bash_completion_loads_and_completes_a_command() {
    let Some(tools) = interop::tools(
        "bash_completion_loads_and_completes_a_command",
        &["bash"],
        "apt-get install bash",
    ) else {
        return;
    };
    let h = home();
    let script = h.file("modflash.bash");
    std::fs::write(&script, h.ok(&["completions", "bash"])).unwrap();
    // What bash does on `modflash fl<TAB>`: the words so far, the cursor's word, the function
    // the script registered for `modflash`.
    let ask = format!(
        "source '{}' && COMP_WORDS=(modflash fl) && COMP_CWORD=1 && COMP_LINE='modflash fl' \
         && COMP_POINT=11 && $(complete -p modflash | sed -E 's/.* -F ([^ ]+) .*/\\1/') \
         modflash fl modflash && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let mut bash = Command::new(&tools[0]);
    bash.args(["--norc", "--noprofile", "-c", &ask]);
    let out = output_within(bash, std::time::Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words, ["flash"], "{stdout}");
}

#[test]
fn every_shell_gets_a_completion_script_naming_the_commands() {
    let h = home();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef modflash"),
        ("fish", "complete -c modflash"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = h.ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["flash", "plan", "completions"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let (code, _, stderr) = h.run_text(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("possible values"), "{stderr}");
}

#[test]
fn the_man_page_describes_every_command() {
    let h = home();
    let page = h.ok(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH modflash 1"),
        "{page}"
    );
    for command in ["flash", "plan", "completions", "\\-\\-color"] {
        assert!(page.contains(command), "the man page lacks {command}");
    }
    let dir = h.file("man1");
    let (code, out, err) = h.run_text(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for page in ["modflash.1", "modflash-flash.1", "modflash-sim-create.1"] {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(roff.contains(".TH"), "{page}: {roff}");
    }
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let h = home();
    let short = h.ok(&["-V"]);
    assert!(
        short.starts_with(&format!("modflash {} (", env!("CARGO_PKG_VERSION"))),
        "{short}"
    );
    let long = h.ok(&["--version"]);
    for field in ["commit:", "target:", "profile:"] {
        assert!(long.contains(field), "{long}");
    }
    // In a git checkout the hash is the one of HEAD (or of a commit, when HEAD moved since).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    if head.is_some() {
        let commit = long
            .lines()
            .find_map(|l| l.strip_prefix("commit:"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(commit.len(), 12, "{long}");
        assert!(commit.chars().all(|c| c.is_ascii_hexdigit()), "{long}");
    }
}

#[test]
fn color_follows_the_option_the_variable_and_no_color() {
    let h = home();
    let app = h.make_app("photon", "1.5.0");
    let inspect = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = h.cmd();
        cmd.env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).arg("inspect").arg(&app);
        text(&output_within(cmd, std::time::Duration::from_secs(60)).stdout)
    };
    let escape = "\u{1b}[";
    // Into a pipe: no colour unless asked for.
    assert!(!inspect(&[], &[]).contains(escape));
    assert!(inspect(&[], &["--color", "always"]).contains(escape));
    assert!(inspect(&[("MODFLASH_COLOR", "always")], &[]).contains(escape));
    assert!(!inspect(&[("MODFLASH_COLOR", "always")], &["--color", "never"]).contains(escape));
    // NO_COLOR only decides for `auto`; an explicit `always` wins.
    assert!(!inspect(&[("NO_COLOR", "1")], &["--color", "auto"]).contains(escape));
    assert!(inspect(&[("NO_COLOR", "1")], &["--color", "always"]).contains(escape));
}

#[test]
fn quiet_keeps_the_result_and_verbose_times_each_operation() {
    let h = home();
    let app = fixture_path("photon_tinker.bin");
    let app = app.to_str().unwrap();
    for (name, flag) in [("q", "-q"), ("n", ""), ("v", "--verbose")] {
        h.create(name, "photon", "1.5.0");
        let device = format!("sim:{name}");
        let mut args = vec!["flash", app, "--device", &device, "--yes"];
        if !flag.is_empty() {
            args.push(flag);
        }
        let (code, stdout, stderr) = h.run_text(&args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("Verified:"), "{flag}: {stdout}");
        match flag {
            "-q" => assert!(!stderr.contains("step 1/"), "{stderr}"),
            "" => {
                assert!(stderr.contains("step 1/"), "{stderr}");
                assert!(!stderr.contains(" done ("), "{stderr}");
            }
            _ => assert!(
                stderr.contains("writing") && stderr.contains(" done ("),
                "{stderr}"
            ),
        }
    }
    let (code, _, stderr) = h.run_text(&["-q", "-v", "devices"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
