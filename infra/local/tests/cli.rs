//! Black-box test of the `syncbridge` command: `up`, `sync`, `status`, `token`, `down`, run as a
//! user would, against the background stack it starts (own state folder, OS-picked ports).

// Test code: an unwrap that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

struct Home(PathBuf);

impl Home {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("syncbridge-cli-{}-{}", std::process::id(), ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_syncbridge"))
            .args(args)
            .env("SYNCBRIDGE_HOME", &self.0)
            .output()
            .unwrap()
    }

    fn stack(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.0.join("stack.json")).unwrap()).unwrap()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[allow(unsafe_code)]
#[test]
fn syncbridge_up_sync_status_token_and_down_work_against_the_hubspot_fake() {
    let home = Home::new();
    let up = text(&home.run(&["up", "--contacts", "30"]));
    assert!(up.contains("Syncbridge local stack is up"), "{up}");
    let stack = home.stack();
    let pid = stack["pid"].as_u64().unwrap();
    let hubspot = stack["hubspot_url"].as_str().unwrap().to_owned();
    let token = stack["hubspot_token"].as_str().unwrap().to_owned();

    let sync = text(&home.run(&["sync", "--provider", "hubspot", "--base-url", &hubspot, "--token", &token]));
    assert!(sync.contains("30 records pulled (30 created, 0 updated"), "{sync}");
    assert!(!sync.contains(&token), "the token must not be echoed");
    let again =
        text(&home.run(&["sync", "--provider", "hubspot", "--base-url", &hubspot, "--token", &token]));
    assert!(again.contains("0 created, 0 updated"), "{again}");

    let status = text(&home.run(&["status"]));
    assert!(status.contains("hubspot") && status.contains("synced") && status.contains(" 30 "), "{status}");
    let jwt = text(&home.run(&["token", "--tenant", "local"]));
    assert_eq!(jwt.trim().split('.').count(), 3, "{jwt}");

    let down = text(&home.run(&["down"]));
    assert!(down.contains("Stopped"), "{down}");
    // SAFETY: signal 0 only asks whether the process exists.
    assert_ne!(unsafe { libc::kill(pid as libc::pid_t, 0) }, 0, "the daemon must be gone after down");
}

#[test]
fn syncbridge_sync_with_a_rejected_token_fails_at_once_with_the_reason_and_what_to_do() {
    let home = Home::new();
    text(&home.run(&["up", "--contacts", "3"]));
    let hubspot = home.stack()["hubspot_url"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let out = home.run(&[
        "sync",
        "--provider",
        "hubspot",
        "--base-url",
        &hubspot,
        "--token",
        "pat-mistyped-0000",
        "--timeout-seconds",
        "300",
    ]);
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a rejected token must fail the command: {shown}");
    assert!(shown.contains("the sync failed: the provider rejected the credentials"), "{shown}");
    assert!(shown.contains("What to do: check the token") && shown.contains("DELETE"), "{shown}");
    assert!(!shown.contains("pat-mistyped-0000"), "the token must not be echoed");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "it waited {:?}", started.elapsed());
}
