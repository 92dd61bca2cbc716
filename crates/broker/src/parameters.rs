//! Runtime parameters (`rabbitmqctl set_parameter`: per vhost, per component, such as
//! `federation-upstream` or `shovel`) and global parameters (`set_global_parameter`, such as
//! `cluster_name`), as RabbitMQ keeps them: values are opaque JSON documents (held here as
//! their text, never interpreted by the broker), so that definitions round-trip. A component
//! has an effect only where Pigeon implements it; none is yet (vhost limits, RabbitMQ's
//! `vhost-limits` component, live in `access/limits.rs`).
//!
//! ```text
//! parameters         vhost, component, name -> JSON text
//! global_parameters  name                   -> JSON text
//! ```
//!
//! Every change is written through to the store before memory changes (as `access/` does).

use crate::access::persist::{key, keys_where, split_key};
use crate::record::{self, get_string, put_bytes};
use parking_lot::{Mutex, RwLock};
use pigeon_store::{MetaOp, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runtime parameters.
pub const PARAMETERS: &str = "parameters";
/// Global parameters.
pub const GLOBAL_PARAMETERS: &str = "global_parameters";

/// A runtime parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its vhost.
    pub vhost: String,
    /// Its component (`federation-upstream`, `shovel`...).
    pub component: String,
    /// Its name.
    pub name: String,
    /// Its value, a JSON document's text.
    pub value: String,
}

type ByVhost = BTreeMap<(String, String, String), String>;

/// Every runtime and global parameter.
#[derive(Default)]
pub struct Parameters {
    vhost: RwLock<ByVhost>,
    global: RwLock<BTreeMap<String, String>>,
    store: Option<Arc<Store>>,
    /// Serialises writers (store, then memory).
    writes: Mutex<()>,
}

fn encode(json: &str) -> Vec<u8> {
    let mut v = record::begin();
    put_bytes(&mut v, json.as_bytes());
    v.to_vec()
}

fn decode(value: &[u8]) -> Option<String> {
    get_string(&mut record::open(value)?)
}

impl Parameters {
    /// None, in memory only.
    pub fn new() -> Parameters {
        Parameters::default()
    }

    /// What `store` holds; changes are written through to it.
    pub fn open(store: Arc<Store>) -> Result<Parameters, StoreError> {
        let mut vhost = BTreeMap::new();
        for (k, v) in store.meta_scan(PARAMETERS)? {
            let parts = split_key(&k, 3).and_then(|p| <[String; 3]>::try_from(p).ok());
            match (parts, decode(&v)) {
                (Some([v, c, n]), Some(value)) => {
                    vhost.insert((v, c, n), value);
                }
                _ => tracing::warn!("skipping an unreadable runtime parameter record"),
            }
        }
        let mut global = BTreeMap::new();
        for (k, v) in store.meta_scan(GLOBAL_PARAMETERS)? {
            let parts = split_key(&k, 1).and_then(|mut p| p.pop());
            match (parts, decode(&v)) {
                (Some(name), Some(value)) => {
                    global.insert(name, value);
                }
                _ => tracing::warn!("skipping an unreadable global parameter record"),
            }
        }
        Ok(Parameters {
            vhost: RwLock::new(vhost),
            global: RwLock::new(global),
            store: Some(store),
            writes: Mutex::new(()),
        })
    }

    fn write(&self, ops: &[MetaOp<'_>]) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => store.meta_batch(ops),
            None => Ok(()),
        }
    }

    /// Every runtime parameter, by vhost, component and name.
    pub fn list(&self) -> Vec<Parameter> {
        self.vhost
            .read()
            .iter()
            .map(|((vhost, component, name), value)| Parameter {
                vhost: vhost.clone(),
                component: component.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// The runtime parameter `name` of `component` in `vhost`.
    pub fn get(&self, vhost: &str, component: &str, name: &str) -> Option<Parameter> {
        let k = (vhost.to_string(), component.to_string(), name.to_string());
        self.vhost.read().get(&k).map(|value| Parameter {
            vhost: k.0.clone(),
            component: k.1.clone(),
            name: k.2.clone(),
            value: value.clone(),
        })
    }

    /// Sets a runtime parameter (`value`: a JSON document's text). Returns whether it is new.
    pub fn set(&self, p: Parameter) -> Result<bool, StoreError> {
        let _w = self.writes.lock();
        let k = key(&[&p.vhost, &p.component, &p.name]);
        let v = encode(&p.value);
        self.write(&[MetaOp::Put {
            table: PARAMETERS,
            key: &k,
            value: &v,
        }])?;
        Ok(self
            .vhost
            .write()
            .insert((p.vhost, p.component, p.name), p.value)
            .is_none())
    }

    /// Clears a runtime parameter; returns whether it existed.
    pub fn clear(&self, vhost: &str, component: &str, name: &str) -> Result<bool, StoreError> {
        let _w = self.writes.lock();
        self.write(&[MetaOp::Delete {
            table: PARAMETERS,
            key: &key(&[vhost, component, name]),
        }])?;
        let k = (vhost.to_string(), component.to_string(), name.to_string());
        Ok(self.vhost.write().remove(&k).is_some())
    }

    /// Every global parameter, by name.
    pub fn globals(&self) -> Vec<(String, String)> {
        self.global
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The global parameter `name` (JSON text).
    pub fn global(&self, name: &str) -> Option<String> {
        self.global.read().get(name).cloned()
    }

    /// Sets a global parameter (`value`: a JSON document's text). Returns whether it is new.
    pub fn set_global(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let _w = self.writes.lock();
        self.write(&[MetaOp::Put {
            table: GLOBAL_PARAMETERS,
            key: &key(&[name]),
            value: &encode(value),
        }])?;
        Ok(self
            .global
            .write()
            .insert(name.to_string(), value.to_string())
            .is_none())
    }

    /// Clears a global parameter; returns whether it existed.
    pub fn clear_global(&self, name: &str) -> Result<bool, StoreError> {
        let _w = self.writes.lock();
        self.write(&[MetaOp::Delete {
            table: GLOBAL_PARAMETERS,
            key: &key(&[name]),
        }])?;
        Ok(self.global.write().remove(name).is_some())
    }

    /// Forgets every runtime parameter of `vhost` (it is deleted), records included.
    pub fn forget_vhost(&self, vhost: &str) -> Result<(), StoreError> {
        let _w = self.writes.lock();
        if let Some(store) = &self.store {
            let keys = keys_where(store, PARAMETERS, 3, |p| p[0] == vhost)?;
            let ops: Vec<MetaOp<'_>> = keys
                .iter()
                .map(|k| MetaOp::Delete {
                    table: PARAMETERS,
                    key: k,
                })
                .collect();
            if !ops.is_empty() {
                store.meta_batch(&ops)?;
            }
        }
        self.vhost.write().retain(|(v, _, _), _| v != vhost);
        Ok(())
    }

    /// The vhosts that have runtime parameters.
    pub fn vhosts(&self) -> std::collections::BTreeSet<String> {
        self.vhost
            .read()
            .keys()
            .map(|(v, _, _)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(
            decode(&encode("{\"uri\":\"amqp://\"}")).as_deref(),
            Some("{\"uri\":\"amqp://\"}")
        );
        assert_eq!(decode(b""), None);
    }
}
