//! What the registry lists for the management API: connections, channels and consumers.

use super::*;

impl Registry {
    /// A snapshot of every connection, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self
            .entries()
            .iter()
            .filter(|e| e.listed())
            .map(|e| e.snapshot())
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// One connection by name.
    pub fn connection(&self, name: &str) -> Option<ConnectionInfo> {
        self.entries()
            .iter()
            .find(|e| e.is_named(name) && e.listed())
            .map(|e| e.snapshot())
    }

    /// Every open channel (`/api/channels`).
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let mut all = Vec::new();
        for e in self.entries() {
            e.with_channels(|channels| {
                if channels.is_empty() {
                    return;
                }
                let d = e.details.lock().clone();
                let name = e.name();
                for ch in channels {
                    all.push(channel::info(ch.as_ref(), &name, &d.user, &d.vhost));
                }
            });
        }
        all.sort_by(|a, b| (&a.connection, a.number).cmp(&(&b.connection, b.number)));
        all
    }

    /// Every consumer of every channel (`/api/consumers`).
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        let mut all = Vec::new();
        for e in self.entries() {
            let vhost = e.details.lock().vhost.clone();
            e.with_channels(|channels| {
                for ch in channels {
                    ch.stats().consumers_into(&e.name(), &vhost, &mut all);
                }
            });
        }
        all
    }
}
