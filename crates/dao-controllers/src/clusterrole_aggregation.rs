//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` holds the
//! rules of every other ClusterRole its `clusterRoleSelectors` select, as upstream's
//! `clusterrole-aggregation` controller keeps them. That is how the bootstrap `admin`, `edit`
//! and `view` roles grow when a ClusterRole labelled
//! `rbac.authorization.k8s.io/aggregate-to-view: "true"` (and so on) appears.
//!
//! Rules are gathered selector by selector, the selected roles in name order, each rule once
//! (an identical rule later is dropped); the role is written only when that differs from what
//! it holds.

use crate::informer::Informer;
use crate::queue::{Action, WorkQueue};
use crate::util::selector_matches;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

#[derive(Clone)]
pub struct ClusterRoleAggregationController {
    client: Client,
    roles: Informer<ClusterRole>,
    queue: WorkQueue,
}

impl ClusterRoleAggregationController {
    pub fn new(client: Client, roles: Informer<ClusterRole>) -> Self {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let cache = roles.clone();
        // Any change may alter what some aggregating role selects: look at all of them (there
        // are a handful). The cache holds the change already when handlers run.
        roles.on_change(move |_| enqueue_aggregating(&cache, &q));
        ClusterRoleAggregationController {
            client,
            roles,
            queue,
        }
    }

    pub async fn run(self) {
        self.roles.wait_synced().await;
        enqueue_aggregating(&self.roles, &self.queue);
        let this = self.clone();
        self.queue
            .clone()
            .run("clusterrole-aggregation", 1, move |name| {
                let this = this.clone();
                async move { this.reconcile(&name).await }
            })
            .await;
    }

    async fn reconcile(&self, name: &str) -> Result<Action, kube::Error> {
        let Some(role) = self.roles.get(name) else {
            return Ok(Action::Done);
        };
        let Some(rules) = aggregate(&role, &self.roles.list()) else {
            return Ok(Action::Done);
        };
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            return Ok(Action::Done);
        }
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        // An update of the cached object: a concurrent change is a conflict, retried with
        // the newer cache, not lost.
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

fn enqueue_aggregating(roles: &Informer<ClusterRole>, queue: &WorkQueue) {
    for role in roles.list() {
        if role.aggregation_rule.is_some() {
            queue.add(role.name_any());
        }
    }
}

/// The rules `role` should hold: `None` when it has no aggregation rule.
pub fn aggregate(
    role: &ClusterRole,
    all: &[std::sync::Arc<ClusterRole>],
) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_deref()
        .unwrap_or_default();
    let mut sorted: Vec<&ClusterRole> = all.iter().map(|r| r.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for other in &sorted {
            if other.metadata.name == role.metadata.name
                || !selector_matches(Some(selector), other.labels())
            {
                continue;
            }
            for rule in other.rules.iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn role(
        name: &str,
        labels: serde_json::Value,
        aggregate_to: Option<&str>,
        verbs: &[&str],
    ) -> Arc<ClusterRole> {
        let mut obj = json!({
            "metadata": {"name": name, "labels": labels},
            "rules": verbs.iter().map(|v| json!({"apiGroups": [""], "resources": ["pods"], "verbs": [v]})).collect::<Vec<_>>(),
        });
        if let Some(label) = aggregate_to {
            obj["aggregationRule"] =
                json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
        }
        Arc::new(serde_json::from_value(obj).unwrap())
    }

    fn verbs(rules: &[PolicyRule]) -> Vec<&str> {
        rules.iter().map(|r| r.verbs[0].as_str()).collect()
    }

    #[test]
    fn selected_roles_contribute_their_rules_in_name_order_once() {
        let view = role("view", json!({}), Some("to-view"), &["stale"]);
        let all = vec![
            view.clone(),
            role(
                "z-extra",
                json!({"to-view": "true"}),
                None,
                &["list", "get"],
            ),
            role(
                "a-base",
                json!({"to-view": "true"}),
                None,
                &["get", "watch"],
            ),
            role("other", json!({"to-edit": "true"}), None, &["delete"]),
        ];
        assert_eq!(
            verbs(&aggregate(&view, &all).unwrap()),
            ["get", "watch", "list"]
        );
        assert!(aggregate(&all[1], &all).is_none());
        // A selector that selects nothing empties the role.
        let lonely = role("lonely", json!({}), Some("to-nothing"), &["get"]);
        assert_eq!(aggregate(&lonely, &all), Some(vec![]));
    }
}
