//! The metadata store: named tables of opaque keys and values in one redb database.
//!
//! Every call is its own write transaction committed with redb's default durability
//! (`Immediate`: fsynced before `commit` returns), so a call that returned `Ok` survives a crash.
//! Tables are created by the first write that names them; reading a table that was never
//! written finds nothing. These calls block on the disk: call them from a blocking context.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition, TableError};

use crate::StoreError;

/// One write of a [`Store::meta_batch`](crate::Store::meta_batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaOp<'a> {
    /// Insert or replace `key` in `table`.
    Put {
        /// The table, created if it does not exist.
        table: &'a str,
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove `key` from `table` (no effect if absent).
    Delete {
        /// The table.
        table: &'a str,
        /// The key.
        key: &'a [u8],
    },
}

/// A key and its value, as listed by [`Store::meta_scan`](crate::Store::meta_scan).
pub type MetaEntry = (Vec<u8>, Vec<u8>);

/// A [`MetaOp`] that owns its bytes: what [`Store::meta_capture`](crate::Store::meta_capture)
/// collects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedMetaOp {
    /// Insert or replace `key` in `table`.
    Put {
        /// The table.
        table: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `table`.
    Delete {
        /// The table.
        table: String,
        /// The key.
        key: Vec<u8>,
    },
}

impl OwnedMetaOp {
    /// The borrowed form, for [`Store::meta_batch`](crate::Store::meta_batch).
    pub fn as_op(&self) -> MetaOp<'_> {
        match self {
            OwnedMetaOp::Put { table, key, value } => MetaOp::Put { table, key, value },
            OwnedMetaOp::Delete { table, key } => MetaOp::Delete { table, key },
        }
    }

    fn from_op(op: &MetaOp<'_>) -> OwnedMetaOp {
        match *op {
            MetaOp::Put { table, key, value } => OwnedMetaOp::Put {
                table: table.to_string(),
                key: key.to_vec(),
                value: value.to_vec(),
            },
            MetaOp::Delete { table, key } => OwnedMetaOp::Delete {
                table: table.to_string(),
                key: key.to_vec(),
            },
        }
    }
}

thread_local! {
    /// The writes collected on this thread by a running `meta_capture`, if any.
    static CAPTURE: std::cell::RefCell<Option<Vec<OwnedMetaOp>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's metadata writes collected instead of committed (see
/// [`Store::meta_capture`](crate::Store::meta_capture)).
pub(crate) fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedMetaOp>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let ops = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, ops.unwrap_or_default())
}

pub(crate) struct Meta {
    db: Database,
}

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

impl Meta {
    /// Opens or creates the database; `dir` names the data directory in errors.
    pub(crate) fn open(path: &Path, dir: &Path) -> Result<Meta, StoreError> {
        let db = redb::Builder::new()
            // The v3 format is what redb 3 reads without an upgrade step.
            .create_with_file_format_v3(true)
            // Metadata is small; redb's default cache would reserve up to 1 GiB.
            .set_cache_size(64 * 1024 * 1024)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                    path: PathBuf::from(dir),
                },
                other => StoreError::from(redb::Error::from(other)),
            })?;
        Ok(Meta { db })
    }

    pub(crate) fn batch(&self, ops: &[MetaOp<'_>]) -> Result<(), StoreError> {
        let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(collected) => {
                collected.extend(ops.iter().map(OwnedMetaOp::from_op));
                true
            }
            None => false,
        });
        if captured {
            return Ok(());
        }
        self.commit(ops)
    }

    /// Commits `ops` in one transaction, never captured.
    pub(crate) fn commit(&self, ops: &[MetaOp<'_>]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        for op in ops {
            match *op {
                MetaOp::Put {
                    table: t,
                    key,
                    value,
                } => {
                    let mut t = txn.open_table(table(t)).map_err(redb::Error::from)?;
                    t.insert(key, value).map_err(redb::Error::from)?;
                }
                MetaOp::Delete { table: t, key } => {
                    let mut t = txn.open_table(table(t)).map_err(redb::Error::from)?;
                    t.remove(key).map_err(redb::Error::from)?;
                }
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    pub(crate) fn get(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(redb::Error::from(e).into()),
        };
        let value = t.get(key).map_err(redb::Error::from)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    pub(crate) fn scan(&self, name: &str) -> Result<Vec<MetaEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb::Error::from(e).into()),
        };
        let mut rows = Vec::new();
        for row in t.iter().map_err(redb::Error::from)? {
            let (k, v) = row.map_err(redb::Error::from)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }
}
