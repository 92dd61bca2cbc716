//! Another node's MQTT subscriptions as this node routes to them: the bindings to that node's
//! session queues (through their proxies here) that its announcements ask for.

use super::*;

impl Forwarder {
    /// Makes this node route to `from`'s queue as `subs` says.
    pub(super) fn apply_subs(&self, from: &str, queues: &mut KnownQueues, subs: QueueSubs) {
        let key = (subs.vhost.clone(), subs.queue.clone());
        let Some(v) = self.broker.vhost(&subs.vhost) else {
            return;
        };
        let wanted: BTreeSet<String> = subs.patterns.iter().cloned().collect();
        if wanted.is_empty() {
            if let Some(k) = queues.remove(&key) {
                self.unbind_known(&subs.vhost, &subs.queue, k);
            }
            return;
        }
        if !queues.contains_key(&key) {
            let proxy = if subs.replicated {
                None
            } else {
                let options = QueueOptions {
                    durable: false,
                    ..QueueOptions::default()
                };
                let name = proxy_name(&subs.queue, from);
                let Ok(declared) = v.declare_queue(&name, false, options, 0) else {
                    tracing::warn!(queue = %name, "cluster: cannot make the proxy of an MQTT session queue of another node");
                    return;
                };
                let q = declared.queue;
                if q.remote().is_none() {
                    q.set_remote(Arc::new(MqttHome {
                        node: from.to_string(),
                        vhost: subs.vhost.clone(),
                        target: subs.queue.clone(),
                        durable: subs.durable,
                        forwarder: self.this.clone(),
                    }));
                }
                Some(q)
            };
            queues.insert(
                key.clone(),
                Known {
                    proxy,
                    exchange: subs.exchange.clone(),
                    patterns: BTreeSet::new(),
                    durable: subs.durable,
                },
            );
        }
        let Some(k) = queues.get_mut(&key) else {
            return;
        };
        k.durable = subs.durable;
        let target = match &k.proxy {
            Some(p) => Arc::clone(p),
            None => match v.queue(&subs.queue) {
                Ok(q) => q,
                Err(_) => return,
            },
        };
        for gone in k.patterns.difference(&wanted) {
            let dest = Destination::Queue(Arc::clone(&target));
            let _ = v.unbind(&k.exchange, dest, gone, Table::new());
        }
        for new in wanted.difference(&k.patterns) {
            let dest = Destination::Queue(Arc::clone(&target));
            if let Err(e) = v.bind(&subs.exchange, dest, new, Table::new()) {
                tracing::warn!(error = %e, "cluster: cannot bind an MQTT subscription of another node");
            }
        }
        k.patterns = wanted;
        k.exchange = subs.exchange;
    }
}
