//! Hot swap, disable, last-known-good and quarantine, with real plugins behind the
//! registry.

mod support;

use std::sync::Arc;
use std::time::Duration;

use wasmplug_host::builtin;
use wasmplug_host::handler::SharedHandler;
use wasmplug_host::plugin::Digest;
use wasmplug_host::registry::breaker::{MIN_FAULTS, Transition};
use wasmplug_host::registry::{FailedLoad, Install, Origin, Registry, State, Unavailable};
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};

fn runtime() -> Runtime {
    Runtime::new(EngineSettings::default()).expect("the engine builds")
}

fn plugin(runtime: &Runtime, name: &str, limits: CallLimits) -> SharedHandler {
    Arc::new(runtime.load(&support::read_example(name), limits).expect("example loads"))
}

fn install(registry: &Registry, key: &str, version: &str, handler: SharedHandler) {
    registry.install(Install {
        key: key.into(),
        origin: Origin::Plugin { name: key.into(), version: version.into() },
        digest: None,
        limits: None,
        compilation: None,
        enabled: true,
        warnings: Vec::new(),
        handler,
    });
}

fn version_of(origin: &Origin) -> &str {
    match origin {
        Origin::Plugin { version, .. } => version,
        Origin::Builtin => "builtin",
    }
}

#[test]
fn a_call_in_flight_finishes_on_its_version_and_the_next_call_gets_the_new_one() {
    let (runtime, registry) = (runtime(), Arc::new(Registry::new()));
    install(&registry, "misbehaving", "1.0.0", plugin(&runtime, "misbehaving", CallLimits::DEFAULT));

    let v1 = registry.serving("misbehaving").expect("v1 serves");
    let in_flight = std::thread::spawn(move || (v1.handler().validate("slow", b""), v1.format.origin.clone()));
    std::thread::sleep(Duration::from_millis(50));
    install(&registry, "misbehaving", "2.0.0", plugin(&runtime, "misbehaving", CallLimits::DEFAULT));

    let next = registry.serving("misbehaving").expect("v2 serves");
    assert_eq!(version_of(&next.format.origin), "2.0.0", "the first lookup after the swap gets v2");
    let (answer, origin) = in_flight.join().expect("the in-flight call completes");
    assert_eq!(answer, Ok(()), "the call that started on v1 succeeds");
    assert_eq!(version_of(&origin), "1.0.0", "and it ran on v1");
}

#[test]
fn disable_applies_to_the_next_call_and_enable_restores_it() {
    let registry = Registry::new();
    install(&registry, "unity", "1.0.0", plugin(&runtime(), "unity-format", CallLimits::DEFAULT));
    let before = registry.serving("unity").expect("serves");

    assert!(registry.set_enabled("unity", false));
    let error = registry.serving("unity").expect_err("disabled");
    assert_eq!(error, Unavailable::NotServing { key: "unity".into(), state: State::Disabled, reason: None });
    assert_eq!(error.to_string(), "format \"unity\" is unavailable: it is disabled");
    assert!(before.handler().validate("a.zip", b"").is_err(), "a call holding the old entry still runs");

    assert!(registry.set_enabled("unity", true));
    assert!(registry.serving("unity").is_ok());
    assert!(!registry.set_enabled("npm", false), "unknown formats are reported");
}

#[test]
fn a_failed_update_keeps_the_last_good_version_serving_and_says_why() {
    let registry = Registry::new();
    install(&registry, "unity", "1.0.0", plugin(&runtime(), "unity-format", CallLimits::DEFAULT));
    let failed = FailedLoad { digest: Some(Digest::of(b"v2")), retrying: false };
    registry.record_load_failure(
        "unity",
        Origin::Plugin { name: "unity".into(), version: "2.0.0".into() },
        failed,
        "bad".into(),
    );

    let serving = registry.serving("unity").expect("v1 still serves");
    assert_eq!(version_of(&serving.format.origin), "1.0.0");
    assert_eq!(serving.format.last_error.as_deref(), Some("bad"));
    assert_eq!(serving.format.failed_load, Some(failed), "which version failed, for the host's record");
    assert_eq!(serving.format.state(), State::Active);
}

#[test]
fn a_format_that_never_loaded_is_listed_as_failed() {
    let registry = Registry::new();
    let origin = Origin::Plugin { name: "wrong-world".into(), version: "0.1.0".into() };
    let failed = FailedLoad { digest: None, retrying: false };
    registry.record_load_failure("wrong-world", origin, failed, "does not export the handler".into());
    let error = registry.serving("wrong-world").expect_err("nothing to serve");
    assert_eq!(error.to_string(), "format \"wrong-world\" is unavailable: it is failed (does not export the handler)");
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.get("wrong-world").map(|f| f.state()), Some(State::Failed));
    assert_eq!(
        registry.serving("nope").expect_err("unknown").to_string(),
        "unknown format \"nope\"; GET /v1/formats lists the formats this host serves"
    );
}

#[test]
fn repeated_faults_quarantine_the_plugin_until_it_changes() {
    let runtime = runtime();
    let registry = Registry::new();
    let tight = CallLimits { timeout: Duration::from_millis(20), ..CallLimits::DEFAULT };
    install(&registry, "misbehaving", "1.0.0", plugin(&runtime, "misbehaving", tight));
    let call = |how: &str| {
        let serving = registry.serving("misbehaving").expect("serving");
        let outcome = serving.handler().validate(how, b"");
        registry.report(&serving, &outcome, 0)
    };

    for _ in 1..MIN_FAULTS {
        assert_eq!(call("loop"), Transition::None);
    }
    assert!(registry.serving("misbehaving").is_ok(), "not yet quarantined");
    let Transition::Quarantined { reason } = call("loop") else { panic!("the fifth fault quarantines") };
    assert!(reason.contains("exceeded its time limit of 20ms"), "{reason}");

    let error = registry.serving("misbehaving").expect_err("quarantined");
    let message = error.to_string();
    assert!(message.starts_with("format \"misbehaving\" is unavailable: it is quarantined"), "{message}");
    assert!(message.contains("5 of its last 5 calls failed") && message.contains("a trial call is let through in"));
    let listed = registry.snapshot().get("misbehaving").map(|f| f.state());
    assert_eq!(listed, Some(State::Quarantined));

    // Each documented way out: re-enabling, the reset, a new version.
    registry.set_enabled("misbehaving", false);
    registry.set_enabled("misbehaving", true);
    assert!(registry.serving("misbehaving").is_ok(), "re-enabling ends the quarantine");
    for _ in 0..MIN_FAULTS {
        call("loop");
    }
    assert!(registry.reset_quarantine("misbehaving"), "it was quarantined again");
    assert!(registry.serving("misbehaving").is_ok(), "the reset ends it");
    for _ in 0..MIN_FAULTS {
        call("loop");
    }
    install(&registry, "misbehaving", "1.0.1", plugin(&runtime, "misbehaving", CallLimits::DEFAULT));
    assert!(registry.serving("misbehaving").is_ok(), "a new version clears the quarantine");
}

#[test]
fn builtin_and_plugin_formats_sit_side_by_side() {
    let registry = Registry::new();
    install(&registry, "unity", "1.0.0", plugin(&runtime(), "unity-format", CallLimits::DEFAULT));
    registry.install(Install {
        key: "generic".into(),
        origin: Origin::Builtin,
        digest: None,
        limits: None,
        compilation: None,
        enabled: true,
        warnings: Vec::new(),
        handler: builtin::handler("generic", &CallLimits::DEFAULT).expect("generic is builtin"),
    });
    let listed: Vec<(String, Origin)> =
        registry.snapshot().formats().map(|f| (f.key.clone(), f.origin.clone())).collect();
    assert_eq!(listed[0], ("generic".into(), Origin::Builtin));
    assert_eq!(listed[1].0, "unity");
    let generic = registry.serving("generic").expect("serves");
    assert_eq!(generic.handler().parse_metadata("a/b.txt", b"x").expect("ok").content_type, "text/plain");
}

/// A key whose owner went while another object declares it is changing hands:
/// unavailable for the moment (409 format_unavailable), not unknown (404),
/// until the next owner's version is installed.
#[test]
fn a_key_changing_hands_is_unavailable_not_unknown_until_the_next_owner_is_installed() {
    let (runtime, registry) = (runtime(), Registry::new());
    install(&registry, "unity", "1.0.0", plugin(&runtime, "unity-format", CallLimits::DEFAULT));
    registry.hand_over("unity");
    match registry.serving("unity").map(drop) {
        Err(Unavailable::NotServing { state: State::ChangingHands, reason: Some(reason), .. }) => {
            assert!(reason.contains("another takes the key over"), "{reason}");
        }
        other => panic!("expected changing hands, got {other:?}"),
    }
    install(&registry, "unity", "2.0.0", plugin(&runtime, "unity-format", CallLimits::DEFAULT));
    assert_eq!(version_of(&registry.serving("unity").expect("serves").format.origin), "2.0.0");
    // Handing over a key that was never served changes nothing.
    registry.hand_over("npm");
    assert!(matches!(registry.serving("npm").map(drop), Err(Unavailable::Unknown { .. })));
}
