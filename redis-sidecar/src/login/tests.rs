//! Unit tests of the authenticator over htpasswd files: principals, the bcrypt queue bound,
//! the positive cache (hits, expiry, misses, file changes, size bound), remembered refusals,
//! failure limits and single flight.

use super::cache::{LoginCache, MAX_ENTRIES};
use super::*;

/// No limits: the rows of most tests fail often.
const NO_LIMITS: LimitSettings = LimitSettings {
    per_user: 0,
    per_address: 0,
    window: Duration::from_secs(60),
};

/// A `$2y$` bcrypt hash at the minimum cost.
fn hash(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        user: user.into(),
        password: password.into(),
    }
}

/// An htpasswd file on disk with the given `user:password` pairs.
struct File {
    dir: tempfile::TempDir,
}

impl File {
    fn new(users: &[(&str, &str)]) -> File {
        let file = File {
            dir: tempfile::tempdir().unwrap(),
        };
        file.write(users);
        file
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("htpasswd")
    }

    fn write(&self, users: &[(&str, &str)]) {
        let text: String = users
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", hash(password)))
            .collect();
        std::fs::write(self.path(), text).unwrap();
    }

    fn authenticator(&self, concurrency: usize, queue: Duration, ttl: Duration) -> Authenticator {
        self.authenticator_with(LoginSettings {
            concurrency,
            queue_timeout: queue,
            cache_ttl: ttl,
            refusal_ttl: Duration::ZERO,
            limits: NO_LIMITS,
        })
    }

    fn authenticator_with(&self, settings: LoginSettings) -> Authenticator {
        let source = HtpasswdSource::new(self.path(), Htpasswd::load(&self.path()).unwrap());
        Authenticator::new(Backend::Htpasswd(source), settings).unwrap()
    }
}

const TTL: Duration = Duration::from_secs(30);
const QUEUE: Duration = Duration::from_secs(5);

async fn login(auth: &Authenticator, credentials: Credentials) -> Result<Principal, AuthError> {
    login_from(auth, credentials, None).await
}

async fn login_from(
    auth: &Authenticator,
    credentials: Credentials,
    address: Option<IpAddr>,
) -> Result<Principal, AuthError> {
    auth.authenticate(LoginRequest {
        credentials: &credentials,
        authorization: None,
        scopes: &[],
        address,
    })
    .await
    .map(|login| login.principal)
}

#[tokio::test]
async fn authenticator_maps_credentials_to_principals() {
    let file = File::new(&[("alice", "pw")]);
    let auth = file.authenticator(2, QUEUE, TTL);
    struct Row {
        case: &'static str,
        credentials: Credentials,
        want: Result<Principal, AuthError>,
    }
    let rows = [
        Row {
            case: "anonymous",
            credentials: Credentials::Anonymous,
            want: Ok(Principal::Anonymous),
        },
        Row {
            case: "right password",
            credentials: basic("alice", "pw"),
            want: Ok(Principal::User("alice".into())),
        },
        Row {
            case: "wrong password",
            credentials: basic("alice", "no"),
            want: Err(AuthError::BadCredentials),
        },
        Row {
            case: "unknown user",
            credentials: basic("mallory", "pw"),
            want: Err(AuthError::BadCredentials),
        },
    ];
    for row in rows {
        assert_eq!(
            login(&auth, row.credentials).await,
            row.want,
            "{}",
            row.case
        );
    }
    let none = Authenticator::new(
        Backend::None,
        LoginSettings {
            concurrency: 1,
            queue_timeout: QUEUE,
            cache_ttl: TTL,
            refusal_ttl: Duration::ZERO,
            limits: NO_LIMITS,
        },
    )
    .unwrap();
    assert_eq!(
        login(&none, basic("alice", "pw")).await,
        Err(AuthError::BadCredentials)
    );
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_take_the_same_bcrypt_path() {
    let file = File::new(&[("alice", "pw")]);
    let auth = file.authenticator(1, QUEUE, Duration::ZERO);
    for (case, user, password) in [
        ("right password", "alice", "pw"),
        ("wrong password", "alice", "no"),
        ("unknown user", "mallory", "pw"),
    ] {
        let before = auth.upstream_calls();
        let _ = login(&auth, basic(user, password)).await;
        assert_eq!(auth.upstream_calls(), before + 1, "{case}: one bcrypt run");
    }
    let before = auth.upstream_calls();
    login(&auth, Credentials::Anonymous).await.unwrap();
    assert_eq!(auth.upstream_calls(), before, "anonymous runs no bcrypt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_admits_the_work_the_cpus_clear_within_the_bound() {
    let file = File::new(&[("u1", "pw"), ("u2", "pw"), ("u3", "pw")]);
    let auth = Arc::new(file.authenticator(1, Duration::from_millis(250), TTL));
    assert!(
        auth.verify_time() > Duration::ZERO,
        "a verification was timed at start"
    );
    // Each verification is taken to cost 100 ms: with one CPU, 250 ms admits two queued.
    auth.verify_micros.store(100_000, Ordering::Relaxed);
    // Hold the only slot, as a long bcrypt run would.
    let held = auth.permits.acquire().await.unwrap();
    let spawn = |user: &'static str| {
        let auth = Arc::clone(&auth);
        tokio::spawn(async move { login(&auth, basic(user, "pw")).await })
    };
    let first = spawn("u1");
    let second = spawn("u2");
    wait_until_queued(&auth, 2).await;
    let started = std::time::Instant::now();
    assert_eq!(
        login(&auth, basic("u3", "pw")).await,
        Err(AuthError::Busy),
        "a third would be done after 300 ms"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "refused at once"
    );
    assert_eq!(auth.upstream_calls(), 0, "nothing verified while refused");
    // The admitted ones wait their turn, however long the slot is held.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "no wall-time limit"
    );
    drop(held);
    assert_eq!(first.await.unwrap(), Ok(Principal::User("u1".into())));
    assert_eq!(second.await.unwrap(), Ok(Principal::User("u2".into())));
    assert_eq!(
        auth.queued.load(Ordering::Relaxed),
        0,
        "the queue is empty again"
    );
}

async fn wait_until_queued(auth: &Authenticator, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while auth.queued.load(Ordering::Relaxed) < n {
        assert!(std::time::Instant::now() < deadline, "never queued {n}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_refusal_is_remembered_for_its_lifetime_and_dropped_with_the_file() {
    let file = File::new(&[("alice", "pw")]);
    let auth = file.authenticator_with(LoginSettings {
        concurrency: 1,
        queue_timeout: QUEUE,
        cache_ttl: TTL,
        refusal_ttl: Duration::from_secs(10),
        limits: NO_LIMITS,
    });
    assert_eq!(
        login(&auth, basic("alice", "no")).await,
        Err(AuthError::BadCredentials)
    );
    assert_eq!(
        login(&auth, basic("alice", "no")).await,
        Err(AuthError::RememberedRefusal),
        "the same wrong password again"
    );
    assert_eq!(auth.upstream_calls(), 1, "refused again without bcrypt");
    assert_eq!(
        login(&auth, basic("alice", "pw")).await,
        Ok(Principal::User("alice".into())),
        "the right password is another login"
    );
    file.write(&[("alice", "no")]);
    assert_eq!(
        login(&auth, basic("alice", "no")).await,
        Ok(Principal::User("alice".into())),
        "a changed file forgets the refusals"
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_user_and_per_address() {
    let file = File::new(&[("alice", "pw"), ("bob", "pw")]);
    let auth = file.authenticator_with(LoginSettings {
        concurrency: 1,
        queue_timeout: QUEUE,
        cache_ttl: TTL,
        refusal_ttl: Duration::ZERO,
        limits: LimitSettings {
            per_user: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        },
    });
    let ip = |last: u8| Some(IpAddr::from([10, 0, 0, last]));
    // Bob logs in once: his login is cached.
    login_from(&auth, basic("bob", "pw"), ip(9)).await.unwrap();
    for n in 1..=3 {
        let _ = login_from(&auth, basic("alice", &format!("wrong{n}")), ip(n)).await;
    }
    let calls = auth.upstream_calls();
    assert!(
        matches!(
            login_from(&auth, basic("alice", "pw"), ip(4)).await,
            Err(AuthError::Limited(Limited::User { .. }))
        ),
        "three failures from three addresses spend alice's budget, even for her password"
    );
    assert_eq!(auth.upstream_calls(), calls, "refused without bcrypt");
    // Address 7 fails five times as five users.
    for n in 0..5 {
        let _ = login_from(&auth, basic(&format!("nobody{n}"), "x"), ip(7)).await;
    }
    assert!(matches!(
        login_from(&auth, basic("carol", "x"), ip(7)).await,
        Err(AuthError::Limited(Limited::Address { .. }))
    ));
    assert_eq!(
        login_from(&auth, basic("bob", "pw"), ip(7)).await,
        Ok(Principal::User("bob".into())),
        "a cached login is never limited"
    );
}

#[tokio::test]
async fn the_cache_answers_repeated_successes_only() {
    let file = File::new(&[("alice", "pw"), ("bob", "pw")]);
    let auth = file.authenticator(2, QUEUE, TTL);
    struct Row {
        case: &'static str,
        credentials: Credentials,
        ok: bool,
        /// upstream calls and cache hits after the row
        calls: u64,
        hits: u64,
    }
    let rows = [
        Row {
            case: "first login checks",
            credentials: basic("alice", "pw"),
            ok: true,
            calls: 1,
            hits: 0,
        },
        Row {
            case: "second login is a hit",
            credentials: basic("alice", "pw"),
            ok: true,
            calls: 1,
            hits: 1,
        },
        Row {
            case: "a different password is a miss and refused",
            credentials: basic("alice", "PW"),
            ok: false,
            calls: 2,
            hits: 1,
        },
        Row {
            case: "a refusal is not cached",
            credentials: basic("alice", "PW"),
            ok: false,
            calls: 3,
            hits: 1,
        },
        Row {
            case: "another user with the same password is a miss",
            credentials: basic("bob", "pw"),
            ok: true,
            calls: 4,
            hits: 1,
        },
        Row {
            case: "the first user is still cached",
            credentials: basic("alice", "pw"),
            ok: true,
            calls: 4,
            hits: 2,
        },
    ];
    for row in rows {
        let outcome = login(&auth, row.credentials).await;
        assert_eq!(outcome.is_ok(), row.ok, "{}: {outcome:?}", row.case);
        assert_eq!(auth.upstream_calls(), row.calls, "{}", row.case);
        assert_eq!(auth.cache_hits(), row.hits, "{}", row.case);
    }
}

#[tokio::test]
async fn cached_logins_expire() {
    let file = File::new(&[("alice", "pw")]);
    let auth = file.authenticator(1, QUEUE, TTL);
    login(&auth, basic("alice", "pw")).await.unwrap();
    tokio::time::pause();
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    login(&auth, basic("alice", "pw")).await.unwrap();
    assert_eq!((auth.upstream_calls(), auth.cache_hits()), (1, 1));
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    login(&auth, basic("alice", "pw")).await.unwrap();
    assert_eq!(
        (auth.upstream_calls(), auth.cache_hits()),
        (2, 1),
        "expired: checked again"
    );
}

#[tokio::test]
async fn a_zero_ttl_disables_the_cache() {
    let file = File::new(&[("alice", "pw")]);
    let auth = file.authenticator(1, QUEUE, Duration::ZERO);
    for _ in 0..3 {
        login(&auth, basic("alice", "pw")).await.unwrap();
    }
    assert_eq!((auth.upstream_calls(), auth.cache_hits()), (3, 0));
}

#[tokio::test]
async fn a_changed_file_drops_the_cache_at_once() {
    let file = File::new(&[("alice", "old"), ("bob", "pw")]);
    let auth = file.authenticator(1, QUEUE, TTL);
    login(&auth, basic("alice", "old")).await.unwrap();
    login(&auth, basic("bob", "pw")).await.unwrap();
    file.write(&[("alice", "new"), ("bob", "pw")]);
    assert_eq!(
        login(&auth, basic("alice", "old")).await,
        Err(AuthError::BadCredentials),
        "the old password stops working on the next login"
    );
    assert_eq!(
        login(&auth, basic("alice", "new")).await,
        Ok(Principal::User("alice".into()))
    );
    let calls = auth.upstream_calls();
    login(&auth, basic("bob", "pw")).await.unwrap();
    assert_eq!(
        auth.upstream_calls(),
        calls + 1,
        "every cached login was dropped"
    );
    // A file that no longer parses keeps the last good users, and still drops the cache.
    std::fs::write(file.path(), "alice:plain-text\n").unwrap();
    assert_eq!(
        login(&auth, basic("alice", "new")).await,
        Ok(Principal::User("alice".into()))
    );
    assert_eq!(auth.upstream_calls(), calls + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_identical_logins_costs_one_check() {
    let file = File::new(&[("alice", "pw")]);
    let auth = Arc::new(file.authenticator(2, QUEUE, TTL));
    for (case, password, ok) in [("right", "pw", true), ("wrong", "no", false)] {
        let before = auth.upstream_calls();
        let logins: Vec<_> = (0..100)
            .map(|_| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move { login(&auth, basic("alice", password)).await })
            })
            .collect();
        for handle in logins {
            assert_eq!(handle.await.unwrap().is_ok(), ok, "{case}");
        }
        // A wrong password is shared by the logins that overlap it but never cached, so a
        // straggler may check again; a right one is cached and costs exactly one check.
        let calls = auth.upstream_calls() - before;
        if ok {
            assert_eq!(calls, 1, "{case}");
        } else {
            assert!(calls < 100, "{case}: {calls} checks for 100 logins");
        }
    }
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let cache = LoginCache::new(TTL, Duration::ZERO).unwrap();
    for n in 0..MAX_ENTRIES + 10 {
        let user = format!("user{n}");
        let key = cache.key(&user, "pw");
        let principal = Principal::User(user);
        assert_eq!(
            cache.flight(key, async { Ok(principal.clone()) }).await,
            Ok(principal)
        );
    }
    assert_eq!(cache.len(), MAX_ENTRIES);
    let last = cache.key(&format!("user{}", MAX_ENTRIES + 9), "pw");
    assert!(cache.get(&last).is_some(), "the newest login is kept");
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn keys_separate_user_and_password_and_differ_per_process() {
    let cache = LoginCache::new(TTL, Duration::ZERO).unwrap();
    assert_ne!(cache.key("ab", "c"), cache.key("a", "bc"));
    assert_eq!(cache.key("a", "b"), cache.key("a", "b"));
    let other = LoginCache::new(TTL, Duration::ZERO).unwrap();
    assert_ne!(cache.key("a", "b"), other.key("a", "b"));
}
