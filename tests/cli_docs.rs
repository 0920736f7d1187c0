//! The command line documents itself: shell completions and the manual page come from the
//! clap definitions, every flag has a help text, and `check --json` is one JSON object.

use std::process::{Command, Output};

fn symbiont(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(args)
        .env_remove("SYMBIONT_CONFIG")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run symbiont");
    assert!(
        o.status.success(),
        "symbiont {args:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(symbiont(args).stdout).expect("UTF-8")
}

#[test]
fn completions_for_bash_zsh_fish_and_powershell_know_the_flags() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = stdout(&["completions", shell]);
        // fish writes long flags as `-l native`
        for flag in ["native", "sandbox-tier", "timeout", "json"] {
            assert!(
                script.contains(&format!("--{flag}")) || script.contains(&format!("-l {flag}")),
                "{shell} completions lack --{flag}"
            );
        }
        assert!(script.contains("completions") && script.contains("check"));
    }
}

#[test]
fn man_renders_a_roff_page() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH symbiont 1"), "{page}");
    for part in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
        "symbiont\\-run(1)",
    ] {
        assert!(page.contains(part), "the page lacks {part:?}:\n{page}");
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("man-pages");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    symbiont(&["man", "--out-dir", dir.to_str().unwrap()]);
    let run = std::fs::read_to_string(dir.join("symbiont-run.1")).expect("symbiont-run.1");
    assert!(run.contains("\\-\\-native"), "{run}");
    assert!(run.contains("\\-\\-timeout"), "{run}");
}

#[test]
fn every_flag_has_a_help_text() {
    for sub in ["run", "exec", "check", "dashboard", "completions", "man"] {
        let help = stdout(&[sub, "--help"]);
        for line in help.lines().map(str::trim_start) {
            if line.starts_with("--") || line.starts_with('-') && line.len() > 1 {
                // `--flag <VALUE>  Help text`: something after the flag and its value.
                let text = line.split("  ").skip(1).find(|s| !s.trim().is_empty());
                assert!(
                    text.is_some(),
                    "`symbiont {sub}`: no help text for {line:?}"
                );
            }
        }
    }
}

#[test]
fn check_json_is_one_object_with_settings_and_their_origins() {
    let out = stdout(&["check", "--json", "--native"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert!(v["config_file"].is_null() || v["config_file"].is_string());
    let s = &v["settings"]["security.allow_native_execution"];
    assert_eq!(s["value"], true, "{v}");
    assert_eq!(s["origin"]["kind"], "flag", "{v}");
    let mem = &v["settings"]["native_execution.max_memory_mb"];
    assert!(mem["value"].is_u64(), "{v}");
    assert!(v["enforcement"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(v["agent_files"].as_array().is_some());
}
