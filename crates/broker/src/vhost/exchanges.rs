//! Exchanges of a vhost: `exchange.declare` and `exchange.delete`, and the bindings
//! (`queue.bind`, `exchange.bind` and their unbinds), with what they write to the store.

use super::{
    default_exchange_refused, inequivalent, not_found, unknown_exchange_type, ExchangeDeclare,
    VHost,
};
use crate::durable;
use crate::error::{BrokerError, Result};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::value::Table;
use std::sync::Arc;

impl VHost {
    /// `exchange.declare`.
    pub fn declare_exchange(&self, d: &ExchangeDeclare<'_>) -> Result<()> {
        self.refuse_if_deleted()?;
        // The type is checked first, existing exchange or not, and a passive declare ignores
        // it (rabbit_channel exchange.declare, rabbit_exchange `check_type`). RabbitMQ 3.13
        // and 4.x refuse an unknown type with 406 (503, closing the connection, before).
        let kind = ExchangeKind::parse(d.kind);
        if kind.is_none() && !d.passive {
            return Err(unknown_exchange_type(d.kind));
        }
        if d.name.is_empty() {
            return Err(default_exchange_refused());
        }
        if let Ok(x) = self.exchange(d.name) {
            if d.passive {
                return Ok(());
            }
            let checks = [
                ("type", d.kind.to_string(), x.kind.as_str().to_string()),
                ("durable", d.durable.to_string(), x.durable.to_string()),
                (
                    "auto_delete",
                    d.auto_delete.to_string(),
                    x.auto_delete.to_string(),
                ),
                ("internal", d.internal.to_string(), x.internal.to_string()),
            ];
            for (arg, got, have) in checks {
                if got != have {
                    return Err(inequivalent(
                        arg, "exchange", d.name, &self.name, &got, &have,
                    ));
                }
            }
            return Ok(());
        }
        if d.passive {
            return Err(not_found("exchange", d.name, &self.name));
        }
        if d.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let kind = kind.ok_or_else(|| unknown_exchange_type(d.kind))?;
        let x = Arc::new(Exchange::new(
            d.name,
            kind,
            d.durable,
            d.auto_delete,
            d.internal,
            d.arguments.clone(),
        ));
        let ae = self
            .policies
            .read()
            .for_exchange(d.name)
            .and_then(|p| p.get_str("alternate-exchange"))
            .map(str::to_string);
        x.set_policy_alternate(ae);
        if let (true, Some(store)) = (x.durable, &self.store) {
            durable::put_exchange(store, &self.name, &x);
        }
        self.exchanges
            .write()
            .entry(Arc::clone(&x.name))
            .or_insert(x);
        Ok(())
    }

    /// `exchange.delete`. Deleting an exchange that does not exist succeeds (as in RabbitMQ).
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let mut exchanges = self.exchanges.write();
        let Some(x) = exchanges.get(name).cloned() else {
            return Ok(());
        };
        if if_unused && x.binding_count() > 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        exchanges.remove(name);
        if let Some(store) = &self.store {
            durable::delete_exchange(store, &self.name, name);
            durable::delete_bindings_of(store, &self.name, durable::Entity::Exchange, name);
        }
        let gone = Destination::Exchange(x);
        for other in exchanges.values() {
            other.unbind_destination(&gone);
        }
        Ok(())
    }

    /// `queue.bind` / `exchange.bind`: binds `destination` to the exchange `source`.
    pub fn bind(
        &self,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: Table,
    ) -> Result<()> {
        let (x, binding) = self.stored_binding(source, destination, key, arguments, true)?;
        x.bind(binding);
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`. Removing a binding that does not exist succeeds.
    pub fn unbind(
        &self,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: Table,
    ) -> Result<()> {
        let (x, binding) = self.stored_binding(source, destination, key, arguments, false)?;
        let removed = x.unbind(&binding);
        if removed && x.auto_delete && x.binding_count() == 0 {
            self.auto_delete_exchange(&x);
        }
        Ok(())
    }

    /// The exchange `source` and the binding to `destination`, written to (`present`) or
    /// removed from the store when both its ends are durable: `bind` and `unbind`'s common part.
    fn stored_binding(
        &self,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: Table,
        present: bool,
    ) -> Result<(Arc<Exchange>, Binding)> {
        let x = self.bindable_exchange(source)?;
        let binding = Binding {
            destination,
            routing_key: key.to_string(),
            arguments,
        };
        self.record_binding(&x, &binding, present);
        Ok((x, binding))
    }

    /// Writes (or removes) a binding in the store when both its ends are durable.
    pub(super) fn record_binding(&self, x: &Exchange, b: &Binding, present: bool) {
        if let (true, Some(store)) = (durable::binding_is_durable(x, &b.destination), &self.store) {
            durable::put_binding(
                store,
                &self.name,
                &x.name,
                &b.destination,
                &b.routing_key,
                &b.arguments,
                present,
            );
        }
    }

    fn bindable_exchange(&self, name: &str) -> Result<Arc<Exchange>> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        self.exchange(name)
    }

    pub(super) fn auto_delete_exchange(&self, x: &Arc<Exchange>) {
        let removed = {
            let mut exchanges = self.exchanges.write();
            let removed = exchanges
                .get(&*x.name)
                .is_some_and(|cur| Arc::ptr_eq(cur, x))
                && x.binding_count() == 0;
            if removed {
                exchanges.remove(&*x.name);
                if let (true, Some(store)) = (x.durable, &self.store) {
                    durable::delete_exchange(store, &self.name, &x.name);
                }
            }
            removed
        };
        if removed {
            self.auto_deleted_exchange(x);
        }
    }
}
