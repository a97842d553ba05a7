//! End-to-end tables for [`Scheduler`]: node choice, sampling, FailedScheduling messages and
//! preemption.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::*;
use crate::testing::{NodeExt, PodExt, affinity_term, node, node_requirement, pod};

fn cache_with(nodes: &[Node], pods: &[Pod]) -> Cache {
    crate::plugins::test_support::cache_with(nodes, pods)
}

/// A scheduler that breaks ties by evaluation order.
fn scheduler() -> Scheduler {
    Scheduler::new(Config {
        seed: None,
        ..Config::default()
    })
}

fn pick(nodes: &[Node], existing: &[Pod], p: &Pod) -> String {
    let cache = cache_with(nodes, existing);
    match scheduler().schedule(&cache, p) {
        Ok(r) => r.node,
        Err(e) => e.message(),
    }
}

fn n(name: &str) -> Node {
    node(name, "4", "8Gi", 110)
}

#[test]
fn num_feasible_nodes_to_find_table() {
    let check = |percentage: Option<u32>, nodes: usize, expected: usize| {
        let s = Scheduler::new(Config {
            percentage_of_nodes_to_score: percentage,
            seed: None,
        });
        assert_eq!(
            s.num_feasible_nodes_to_find(nodes),
            expected,
            "{percentage:?} of {nodes}"
        );
    };
    check(None, 0, 0);
    check(None, 50, 50);
    check(None, 99, 99);
    check(None, 100, 100);
    check(None, 250, 120);
    check(None, 1000, 420);
    check(None, 5000, 500);
    check(None, 6000, 300);
    check(None, 10_000, 500);
    check(Some(0), 1000, 420);
    check(Some(30), 1000, 300);
    check(Some(1), 1000, 100);
    check(Some(100), 1000, 1000);
    check(Some(150), 1000, 1000);
    check(Some(10), 50, 50);
}

#[test]
fn sampling_stops_early_and_rotates() {
    let nodes: Vec<Node> = (0..1000).map(|i| n(&format!("n{i:04}"))).collect();
    let cache = cache_with(&nodes, &[]);
    let mut s = scheduler();
    let p = pod("d", "p", "100m", "");
    let first = s.schedule(&cache, &p).unwrap();
    assert_eq!((first.evaluated, first.feasible), (420, 420));
    assert_eq!(first.node, "n0000");
    let second = s.schedule(&cache, &p).unwrap();
    assert_eq!(second.node, "n0420");
    // Wraps around the end of the list.
    let third = s.schedule(&cache, &p).unwrap();
    assert_eq!(third.node, "n0840");
    // Infeasible nodes are evaluated too, and count towards the rotation.
    let mut nodes = nodes;
    for node in nodes.iter_mut().take(500) {
        *node = node.clone().unschedulable();
    }
    let cache = cache_with(&nodes, &[]);
    let mut s = scheduler();
    let r = s.schedule(&cache, &p).unwrap();
    assert_eq!(
        (r.evaluated, r.feasible, r.node.as_str()),
        (920, 420, "n0500")
    );
}

#[test]
fn least_allocated_node_wins() {
    let existing = [
        pod("d", "a", "2", "4Gi").on("n1"),
        pod("d", "b", "1", "1Gi").on("n2"),
    ];
    assert_eq!(
        pick(
            &[n("n1"), n("n2"), n("n3")],
            &existing,
            &pod("d", "p", "500m", "1Gi")
        ),
        "n3"
    );
    assert_eq!(
        pick(
            &[n("n1"), n("n2")],
            &existing,
            &pod("d", "p", "500m", "1Gi")
        ),
        "n2"
    );
}

#[test]
fn identical_pods_spread_over_identical_nodes() {
    let mut cache = cache_with(&[n("n1"), n("n2"), n("n3"), n("n4"), n("n5")], &[]);
    let mut s = Scheduler::new(Config::default());
    for i in 0..20 {
        let p = pod("d", &format!("p{i}"), "100m", "100Mi");
        let node = s.schedule(&cache, &p).unwrap().node;
        cache.add_pod(&p.on(&node));
    }
    let per_node: Vec<usize> = cache.pods_by_node().values().map(Vec::len).collect();
    assert_eq!(per_node, [4, 4, 4, 4, 4]);
}

#[test]
fn score_ordering_table() {
    let p = || pod("d", "p", "100m", "100Mi");
    let web = |name: &str, node: &str| pod("d", name, "", "").label("app", "web").on(node);
    // PreferNoSchedule taints are avoided unless tolerated (then the first node wins the tie).
    let tainted = [n("n1").taint("spot", "true", "PreferNoSchedule"), n("n2")];
    assert_eq!(pick(&tainted, &[], &p()), "n2");
    assert_eq!(
        pick(&tainted, &[], &p().toleration("spot", "Exists", "", "")),
        "n1"
    );
    // Preferred node affinity.
    let zoned = [n("n1").label("zone", "a"), n("n2").label("zone", "b")];
    assert_eq!(
        pick(
            &zoned,
            &[],
            &p().preferred_node_term(10, vec![node_requirement("zone", "In", &["b"])])
        ),
        "n2"
    );
    // Image locality.
    let imaged = [n("n1"), n("n2").image("app:1", 500 << 20)];
    assert_eq!(pick(&imaged, &[], &p().image("app:1")), "n2");
    // Preferred pod affinity beats a little allocation; anti-affinity repels.
    let two = [n("n1"), n("n2")];
    let near_web = p().preferred_affinity(
        10,
        affinity_term(&[("app", "web")], "kubernetes.io/hostname"),
    );
    assert_eq!(pick(&two, &[web("w", "n2")], &near_web), "n2");
    let away = p().preferred_anti_affinity(
        10,
        affinity_term(&[("app", "web")], "kubernetes.io/hostname"),
    );
    assert_eq!(pick(&two, &[web("w", "n1")], &away), "n2");
    // Existing pods' preferred affinity attracts the incoming pod.
    let likes_web = pod("d", "l", "", "")
        .preferred_affinity(
            50,
            affinity_term(&[("app", "web")], "kubernetes.io/hostname"),
        )
        .on("n2");
    assert_eq!(pick(&two, &[likes_web], &p().label("app", "web")), "n2");
    // ScheduleAnyway spread prefers the emptier zone.
    let spread = p()
        .label("app", "web")
        .spread(1, "zone", "ScheduleAnyway", &[("app", "web")]);
    assert_eq!(
        pick(&zoned, &[web("w1", "n1"), web("w2", "n1")], &spread),
        "n2"
    );
}

#[test]
fn do_not_schedule_spread_places_evenly() {
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .flat_map(|z| (0..2).map(move |i| n(&format!("{z}{i}")).label("zone", z)))
        .collect();
    let mut cache = cache_with(&nodes, &[]);
    let mut s = Scheduler::new(Config::default());
    for i in 0..9 {
        let p = pod("d", &format!("p{i}"), "", "")
            .label("app", "web")
            .spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
        let node = s.schedule(&cache, &p).unwrap().node;
        cache.add_pod(&p.on(&node));
    }
    let mut per_zone = BTreeMap::new();
    for (node, pods) in cache.pods_by_node() {
        *per_zone.entry(node[..1].to_owned()).or_insert(0) += pods.len();
    }
    assert_eq!(per_zone.into_values().collect::<Vec<_>>(), [3, 3, 3]);
}

#[test]
fn nominated_node_is_tried_first() {
    let cache = cache_with(
        &[n("n1"), n("n2"), n("n3")],
        &[pod("d", "a", "1", "").on("n1")],
    );
    let mut s = scheduler();
    let r = s
        .schedule(&cache, &pod("d", "p", "100m", "").nominated("n1"))
        .unwrap();
    assert_eq!((r.node.as_str(), r.evaluated, r.feasible), ("n1", 1, 1));
    // A nominated node that no longer fits is ignored.
    let r = s
        .schedule(&cache, &pod("d", "p", "4", "").nominated("n1"))
        .unwrap();
    assert_ne!(r.node, "n1");
    // So is an unknown one.
    assert!(
        s.schedule(&cache, &pod("d", "p", "1", "").nominated("gone"))
            .is_ok()
    );
}

#[test]
fn ghost_nodes_are_never_chosen() {
    let mut cache = cache_with(&[n("n1")], &[]);
    cache.add_pod(&pod("d", "a", "1", "").on("ghost"));
    let r = scheduler()
        .schedule(&cache, &pod("d", "p", "", ""))
        .unwrap();
    assert_eq!(r.node, "n1");
    assert_eq!(cache.node_count(), 1);
}

/// `(nodes, pod) -> message` for unschedulable pods.
fn check_message(nodes: &[Node], existing: &[Pod], p: &Pod, expected: &str) {
    let cache = cache_with(nodes, existing);
    let err = scheduler()
        .schedule(&cache, p)
        .expect_err("pod must not fit");
    assert_eq!(err.message(), expected);
    assert_eq!(err.to_string(), expected);
}

#[test]
fn fit_error_messages() {
    let small = |name: &str| node(name, "1", "1Gi", 110);
    let gpu = |name: &str| n(name).taint("dedicated", "gpu", "NoSchedule");
    check_message(
        &[small("n1"), small("n2"), gpu("n3"), gpu("n4"), gpu("n5")],
        &[],
        &pod("d", "p", "2", ""),
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: gpu}.",
    );
    // A node short of several resources counts under each.
    check_message(
        &[small("n1")],
        &[],
        &pod("d", "p", "2", "2Gi"),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
    );
    // Entries sort as strings, count included, as upstream.
    let mut nodes: Vec<Node> = (0..10).map(|i| small(&format!("s{i}"))).collect();
    nodes.push(n("c1").unschedulable());
    nodes.push(n("c2").unschedulable());
    check_message(
        &nodes,
        &[],
        &pod("d", "p", "2", ""),
        "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable.",
    );
    check_message(
        &[
            node("n1", "4", "8Gi", 1).label("zone", "a"),
            n("n2").label("zone", "b"),
            n("n3").label("zone", "a").taint(
                "node-role.kubernetes.io/control-plane",
                "",
                "NoSchedule",
            ),
        ],
        &[pod("d", "x", "", "").on("n1")],
        &pod("d", "p", "", "").node_selector("zone", "a"),
        "0/3 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, 1 \
         node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.",
    );
    check_message(
        &[n("n1"), n("n2").label("zone", "a")],
        &[pod("d", "w", "", "")
            .label("app", "web")
            .on("n1")
            .host_port(80, "", "")],
        &pod("d", "p", "", "").host_port(80, "", "").spread(
            1,
            "rack",
            "DoNotSchedule",
            &[("app", "web")],
        ),
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't \
         match pod topology spread constraints (missing required label).",
    );
    let cache = Cache::new();
    let mut s = scheduler();
    let err = s.schedule(&cache, &pod("d", "p", "", "")).unwrap_err();
    assert_eq!(err.message(), "no nodes available to schedule pods");
    assert_eq!(err.num_nodes, 0);
    let note = s.try_preempt(&cache, &pod("d", "p", "", "")).unwrap_err();
    assert_eq!(
        err.message_with_preemption(&note.message),
        "no nodes available to schedule pods"
    );
}

#[test]
fn fit_error_details() {
    let cache = cache_with(
        &[
            node("n1", "1", "1Gi", 110),
            n("n2").taint("a", "b", "NoExecute"),
        ],
        &[],
    );
    let err = scheduler()
        .schedule(&cache, &pod("ns", "p", "2", ""))
        .unwrap_err();
    assert_eq!(err.pod, ("ns".to_owned(), "p".to_owned()));
    assert_eq!(err.num_nodes, 2);
    assert_eq!(err.unresolvable_nodes, 1);
    assert_eq!(
        err.unschedulable_plugins
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        ["NodeResourcesFit", "TaintToleration"]
    );
    assert_eq!(err.reasons.get("Insufficient cpu"), Some(&1));
}

#[test]
fn preemption_notes_complete_the_message() {
    let small = |name: &str| node(name, "1", "1Gi", 110);
    let gpu = |name: &str| n(name).taint("dedicated", "gpu", "NoSchedule");
    let cache = cache_with(
        &[small("n1"), small("n2"), gpu("n3"), gpu("n4"), gpu("n5")],
        &[],
    );
    let p = pod("d", "p", "2", "");
    let mut s = scheduler();
    let err = s.schedule(&cache, &p).unwrap_err();
    let note = s.try_preempt(&cache, &p).unwrap_err();
    assert_eq!(
        err.message_with_preemption(&note.message),
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/5 nodes are available: 2 No preemption victims found for incoming pod, 3 Preemption \
         is not helpful for scheduling."
    );
    assert_eq!(err.message_with_preemption(""), err.message());
    // Victims that would not make room leave the filter's reason.
    let cache = cache_with(&[small("n1")], &[pod("d", "low", "500m", "").on("n1")]);
    let note = s
        .try_preempt(&cache, &pod("d", "p", "2", "").priority(10))
        .unwrap_err();
    assert_eq!(
        note.message,
        "preemption: 0/1 nodes are available: 1 Insufficient cpu."
    );
    let note = s
        .try_preempt(
            &cache,
            &pod("d", "p", "1", "").priority(10).preemption_never(),
        )
        .unwrap_err();
    assert_eq!(
        note.message,
        "preemption: not eligible due to preemptionPolicy=Never."
    );
}

/// A pod on a node with a priority and CPU request.
fn running(name: &str, node: &str, priority: i32, cpu: &str) -> Pod {
    pod("d", name, cpu, "").priority(priority).on(node)
}

fn check_preempt(nodes: &[Node], existing: &[Pod], p: &Pod, expected: Option<(&str, &[&str])>) {
    let cache = cache_with(nodes, existing);
    let got = scheduler().preempt(&cache, p).map(|pr| {
        let mut victims: Vec<String> = pr.victims.into_iter().map(|(_, name)| name).collect();
        victims.sort();
        (pr.node, victims)
    });
    let expected = expected.map(|(n, v)| {
        (
            n.to_owned(),
            v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
    });
    assert_eq!(got, expected, "{p:?}");
}

#[test]
fn preemption_table() {
    let two = |name: &str| node(name, "2", "8Gi", 110);
    let one = |name: &str| node(name, "1", "8Gi", 110);
    let incoming = |cpu: &str| pod("d", "p", cpu, "").priority(100);
    // Lowest highest-priority victim.
    check_preempt(
        &[one("n1"), one("n2")],
        &[running("a", "n1", 10, "1"), running("b", "n2", 5, "1")],
        &incoming("1"),
        Some(("n2", &["b"])),
    );
    // Same top priority: lowest priority sum.
    check_preempt(
        &[two("n1"), two("n2")],
        &[
            running("a", "n1", 5, "1"),
            running("b", "n1", 5, "1"),
            running("c", "n2", 5, "2"),
        ],
        &incoming("2"),
        Some(("n2", &["c"])),
    );
    // Only as many victims as needed, the least important first.
    check_preempt(
        &[two("n1")],
        &[running("a", "n1", 1, "1"), running("b", "n1", 2, "1")],
        &incoming("1"),
        Some(("n1", &["a"])),
    );
    // Pods of higher or equal priority are never victims.
    check_preempt(
        &[two("n1"), two("n2")],
        &[
            running("a", "n1", 200, "1"),
            running("b", "n1", 1, "1"),
            running("c", "n2", 50, "2"),
        ],
        &incoming("2"),
        Some(("n2", &["c"])),
    );
    check_preempt(
        &[one("n1")],
        &[running("a", "n1", 100, "1")],
        &incoming("1"),
        None,
    );
    // Later-started victims are preferred when all else is equal.
    check_preempt(
        &[one("n1"), one("n2")],
        &[
            running("a", "n1", 5, "1").started(200),
            running("b", "n2", 5, "1").started(100),
        ],
        &incoming("1"),
        Some(("n1", &["a"])),
    );
    // Nodes that eviction cannot fix are skipped.
    check_preempt(
        &[one("n1").taint("x", "y", "NoSchedule"), one("n2")],
        &[running("a", "n1", 0, "1"), running("b", "n2", 50, "1")],
        &incoming("1"),
        Some(("n2", &["b"])),
    );
    // Never preempts.
    check_preempt(
        &[one("n1")],
        &[running("a", "n1", 0, "1")],
        &incoming("1").preemption_never(),
        None,
    );
    // A preemption already under way on the nominated node.
    check_preempt(
        &[one("n1"), one("n2")],
        &[
            running("a", "n1", 0, "1").terminating(),
            running("b", "n2", 0, "1"),
        ],
        &incoming("1").nominated("n1"),
        None,
    );
    // Room appeared meanwhile: no victims.
    check_preempt(&[one("n1")], &[], &incoming("1"), Some(("n1", &[])));
}

/// A PodDisruptionBudget in namespace `d` over `app=<app>` with `allowed` disruptions left.
fn budget(
    name: &str,
    app: &str,
    allowed: i32,
    disrupted: &[&str],
) -> k8s_openapi::api::policy::v1::PodDisruptionBudget {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "d"},
        "spec": {"selector": {"matchLabels": {"app": app}}},
        "status": {
            "disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
            "disruptedPods": disrupted.iter().map(|p| (p.to_string(), "2024-01-01T00:00:00Z")).collect::<std::collections::BTreeMap<_, _>>(),
        },
    }))
    .unwrap()
}

fn check_preempt_with_budgets(
    nodes: &[Node],
    existing: &[Pod],
    budgets: &[k8s_openapi::api::policy::v1::PodDisruptionBudget],
    p: &Pod,
    expected: (&str, &[&str]),
) {
    let mut cache = cache_with(nodes, existing);
    for b in budgets {
        cache.upsert_pdb(b);
    }
    let got = scheduler().preempt(&cache, p).map(|pr| {
        let mut victims: Vec<String> = pr.victims.into_iter().map(|(_, name)| name).collect();
        victims.sort();
        (pr.node, victims)
    });
    let want = (
        expected.0.to_owned(),
        expected.1.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    assert_eq!(got, Some(want), "{budgets:?}");
}

#[test]
fn preemption_spares_pods_protected_by_disruption_budgets() {
    let one = |name: &str| node(name, "1", "8Gi", 110);
    let two = |name: &str| node(name, "2", "8Gi", 110);
    let app = |name: &str, node: &str, priority: i32, app: &str| {
        running(name, node, priority, "1").label("app", app)
    };
    let incoming = pod("d", "p", "1", "").priority(100);
    // Without budgets n1's lower-priority victim wins; a budget with no disruptions left
    // protecting it sends preemption to n2, even at a higher priority.
    let pods = [app("a", "n1", 1, "db"), app("b", "n2", 5, "web")];
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[],
        &incoming,
        ("n1", &["a"]),
    );
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[budget("db", "db", 0, &[])],
        &incoming,
        ("n2", &["b"]),
    );
    // Disruptions still allowed, or the pod already counted as disrupted: no violation.
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[budget("db", "db", 1, &[])],
        &incoming,
        ("n1", &["a"]),
    );
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[budget("db", "db", 0, &["a"])],
        &incoming,
        ("n1", &["a"]),
    );
    // A budget's selector must select the pod; an empty selector protects nothing.
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[budget("other", "cache", 0, &[])],
        &incoming,
        ("n1", &["a"]),
    );
    let mut empty = budget("all", "db", 0, &[]);
    empty.spec.as_mut().unwrap().selector = Some(Default::default());
    check_preempt_with_budgets(
        &[one("n1"), one("n2")],
        &pods,
        &[empty],
        &incoming,
        ("n1", &["a"]),
    );
    // On one node, the protected pod is spared when evicting another pod is enough.
    check_preempt_with_budgets(
        &[two("n1")],
        &[app("a", "n1", 1, "db"), app("b", "n1", 5, "web")],
        &[budget("db", "db", 0, &[])],
        &incoming,
        ("n1", &["b"]),
    );
    // Violating is still allowed when nothing else makes room (budgets are best effort).
    check_preempt_with_budgets(
        &[one("n1")],
        &[app("a", "n1", 1, "db")],
        &[budget("db", "db", 0, &[])],
        &incoming,
        ("n1", &["a"]),
    );
}

#[test]
fn preemption_resolves_anti_affinity() {
    let web = |name: &str, node: &str, priority: i32| {
        pod("d", name, "", "")
            .label("app", "web")
            .priority(priority)
            .on(node)
    };
    // The incoming pod's anti-affinity: evict the lower-priority web pod.
    check_preempt(
        &[n("n1"), n("n2")],
        &[web("x", "n1", 0), web("y", "n2", 50)],
        &pod("d", "p", "", "")
            .priority(100)
            .required_anti_affinity(affinity_term(&[("app", "web")], "kubernetes.io/hostname")),
        Some(("n1", &["x"])),
    );
    // An existing pod's anti-affinity against the incoming pod.
    let guard = pod("d", "guard", "", "")
        .required_anti_affinity(affinity_term(&[("app", "web")], "kubernetes.io/hostname"))
        .on("n1");
    check_preempt(
        &[n("n1")],
        &[guard, pod("d", "other", "", "").on("n1")],
        &pod("d", "p", "", "").label("app", "web").priority(10),
        Some(("n1", &["guard"])),
    );
}

#[test]
fn preemption_understands_spread() {
    // Zone a holds two web pods, zone b none but is full: evicting in b makes room and keeps
    // the skew; evicting in a alone would not fit.
    let nodes = [
        node("a1", "4", "8Gi", 110).label("zone", "a"),
        node("b1", "1", "8Gi", 110).label("zone", "b"),
    ];
    let existing = [
        pod("d", "w1", "", "").label("app", "web").on("a1"),
        pod("d", "w2", "", "").label("app", "web").on("a1"),
        pod("d", "filler", "1", "").on("b1"),
    ];
    let p = pod("d", "p", "500m", "")
        .label("app", "web")
        .priority(10)
        .spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
    let cache = cache_with(&nodes, &existing);
    let err = scheduler().schedule(&cache, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod topology spread constraints."
    );
    check_preempt(&nodes, &existing, &p, Some(("b1", &["filler"])));
}

#[test]
fn random_tie_breaking_is_seeded() {
    let nodes: Vec<Node> = (0..10).map(|i| n(&format!("n{i}"))).collect();
    let cache = cache_with(&nodes, &[]);
    let picks = |seed| {
        let mut s = Scheduler::new(Config {
            seed: Some(seed),
            ..Config::default()
        });
        (0..20)
            .map(|_| s.schedule(&cache, &pod("d", "p", "", "")).unwrap().node)
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(1), picks(1));
    let distinct: BTreeSet<String> = picks(1).into_iter().collect();
    assert!(distinct.len() > 3, "ties spread over nodes: {distinct:?}");
}

#[test]
fn the_fast_check_agrees_with_the_filters_on_every_node() {
    // A cluster where every filter rejects some node: zones (one node without), a taint, a
    // cordoned node, a small node, pods with labels and anti-affinity, a terminating pod.
    let nodes = [
        node("a1", "4", "8Gi", 110).label("zone", "a"),
        node("a2", "4", "8Gi", 110).label("zone", "a"),
        node("b1", "4", "8Gi", 110).label("zone", "b"),
        node("b2", "1", "1Gi", 110).label("zone", "b"),
        node("c1", "4", "8Gi", 110)
            .label("zone", "c")
            .taint("dedicated", "x", "NoSchedule"),
        node("c2", "4", "8Gi", 110)
            .label("zone", "c")
            .unschedulable(),
        node("none", "4", "8Gi", 110),
    ];
    let existing = [
        pod("d", "w1", "", "").label("app", "web").on("a1"),
        pod("d", "w2", "", "").label("app", "web").on("a2"),
        pod("d", "w3", "", "").label("app", "web").on("b1"),
        pod("d", "t", "", "")
            .label("app", "web")
            .on("none")
            .terminating(),
        pod("d", "db", "", "")
            .label("app", "db")
            .on("b1")
            .required_anti_affinity(affinity_term(&[("app", "cache")], "zone")),
        pod("d", "big", "3", "").on("a2"),
    ];
    let web = || pod("d", "p", "", "").label("app", "web");
    let pods = [
        web(),
        web().spread(1, "zone", "DoNotSchedule", &[("app", "web")]),
        web().spread(
            1,
            "kubernetes.io/hostname",
            "DoNotSchedule",
            &[("app", "web")],
        ),
        web()
            .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
            .node_selector("zone", "a"),
        web().required_anti_affinity(affinity_term(&[("app", "web")], "zone")),
        web().required_affinity(affinity_term(&[("app", "db")], "zone")),
        pod("d", "p", "", "").label("app", "cache"),
        pod("d", "p", "2", "").toleration("dedicated", "Equal", "x", "NoSchedule"),
        pod("d", "p", "", "")
            .required_anti_affinity(affinity_term(&[("app", "nobody")], "missing-key")),
    ];
    let cache = cache_with(&nodes, &existing);
    for p in &pods {
        let cycle = Cycle::new(&cache, p);
        let mut rejected = 0;
        for &id in &cache.order {
            let node = &cache.nodes[id];
            let filtered = cycle.filter(node);
            rejected += usize::from(filtered.is_err());
            assert_eq!(
                cycle.passes(node),
                filtered.is_ok(),
                "{} for {p:?}",
                node.name
            );
        }
        assert!(rejected > 0, "some node rejects {p:?}");
    }
}
