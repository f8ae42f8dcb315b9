//! The token endpoint refuses bad credentials with 401: a wrong password, an unknown user.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn wrong_password_is_refused_at_the_token_endpoint() {
    let stack = Stack::start();
    for version in HttpVersion::ALL {
        let wrong = stack.token_response(
            Some(("alice", "not-her-password")),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            wrong.status,
            401,
            "wrong password over {version}: {}",
            wrong.summary()
        );
        assert!(
            !wrong.text().contains("\"token\""),
            "a token was issued: {}",
            wrong.summary()
        );

        let nobody = stack.token_response(
            Some(("mallory", "whatever")),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            nobody.status,
            401,
            "unknown user over {version}: {}",
            nobody.summary()
        );

        // The right password still works, so the 401s above are about the credentials.
        let ok = stack.token_response(
            Some(("alice", stack.password("alice"))),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            ok.status,
            200,
            "right password over {version}: {}",
            ok.summary()
        );
    }

    let (run, _) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("alice", "not-her-password"),
    );
    run.assert_failure();
}

/// A flood of wrong passwords from two addresses (one guessing one user's password, one
/// trying a new user name each time) while a good user keeps logging in from a third: the
/// failure limits refuse the flood with 429 before it reaches bcrypt (cost 10, so each
/// verification costs what a real htpasswd file's does), and the good user's logins, every
/// one a full bcrypt check (no login cache), stay fast. Without the limits the flood fills
/// the bcrypt queue and the good user waits behind it.
#[test]
fn a_flood_of_wrong_passwords_leaves_good_logins_fast() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use registry_gate_tests::sidecar::SidecarExtra;
    use registry_gate_tests::storm::{curl_logins, CurlBurst, CurlLogin};
    use registry_gate_tests::StackOptions;

    const PER_USER: usize = 5;
    const PER_ADDRESS: usize = 10;
    let mut options = StackOptions::new("login-flood");
    options.users = vec!["alice".into(), "bob".into()];
    options.bcrypt_cost = 10;
    options.sidecar = SidecarExtra {
        args: [
            "--login-cache-ttl-secs=0",
            "--login-refusal-cache-secs=0",
            &format!("--login-failures-per-user={PER_USER}"),
            &format!("--login-failures-per-address={PER_ADDRESS}"),
        ]
        .map(str::to_owned)
        .to_vec(),
        ..SidecarExtra::default()
    };
    let stack = Stack::start_with(options);
    let base_url = stack.base_url();
    let stop = Arc::new(AtomicBool::new(false));
    // Each flood: bursts of 100 concurrent wrong logins until told to stop.
    let flood = |interface: &'static str, logins: Vec<(String, String)>| {
        let (base_url, ca, stop) = (
            base_url.clone(),
            stack.ca_cert().to_owned(),
            Arc::clone(&stop),
        );
        let dir = stack.scenario.subdir(&format!("flood-{interface}"));
        std::thread::spawn(move || {
            let mut outcomes: Vec<CurlLogin> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (burst, _) = curl_logins(
                    &CurlBurst {
                        base_url: &base_url,
                        ca: &ca,
                        repository: "team/private",
                        dir: &dir,
                        interface: Some(interface),
                    },
                    &logins,
                    100,
                );
                outcomes.extend(burst);
            }
            outcomes
        })
    };
    let guesses = (0..100)
        .map(|n| ("bob".to_owned(), format!("guess{n}")))
        .collect();
    let names = (0..100)
        .map(|n| (format!("nobody{n}"), "x".to_owned()))
        .collect();
    let guessing = flood("127.0.0.2", guesses);
    let spraying = flood("127.0.0.3", names);

    let mut took = Vec::new();
    let started = Instant::now();
    while took.len() < 20 || started.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let resp = stack.token_response(
            Some(("alice", stack.password("alice"))),
            &["repository:team/private:pull"],
            HttpVersion::Http2,
        );
        took.push(t.elapsed());
        assert_eq!(resp.status, 200, "the good user: {}", resp.summary());
    }
    stop.store(true, Ordering::SeqCst);
    let guessing = guessing.join().unwrap();
    let spraying = spraying.join().unwrap();

    took.sort_unstable();
    let p99 = took[(took.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "good logins: {} in {:?}, p50 {:?}, p99 {p99:?}; flood: {} guesses, {} sprayed",
        took.len(),
        started.elapsed(),
        took[took.len() / 2],
        guessing.len(),
        spraying.len()
    );
    assert!(p99 < Duration::from_secs(1), "good logins p99 {p99:?}");
    for (flood, outcomes, limit) in [
        ("guessing bob", &guessing, PER_USER),
        ("spraying names", &spraying, PER_ADDRESS),
    ] {
        let count = |status| outcomes.iter().filter(|l| l.status == status).count();
        let (refused, limited) = (count(401), count(429));
        assert_eq!(
            refused + limited,
            outcomes.len(),
            "{flood}: only 401 and 429"
        );
        assert!(
            refused <= limit,
            "{flood}: {refused} reached bcrypt, the limit is {limit}"
        );
        assert!(limited > 0, "{flood}: limited");
    }
    for (outcome, at_least) in [
        ("limited_user", 1),
        ("limited_address", 1),
        ("refused", PER_USER + PER_ADDRESS),
    ] {
        let series = format!("registry_gate_sidecar_logins_total{{outcome=\"{outcome}\"}}");
        let counted = stack.sidecar.metric(&series).unwrap();
        assert!(
            counted >= at_least as u64,
            "{series} = {counted}, at least {at_least}"
        );
    }
}
