//! Restarting the in-process server on the same data directory, for the tests of what survives a
//! restart (durability, paging, MQTT sessions) and of what needs a data directory at all.

use pigeon_server::ServerConfig;
use std::path::Path;

use crate::TestBroker;

/// A data directory and the configuration that uses it; every start uses the same one.
pub struct DataDir {
    dir: tempfile::TempDir,
    config: ServerConfig,
}

impl DataDir {
    /// A fresh temporary directory and [`ServerConfig::for_tests`] on it (with `$SYS` topics
    /// off), adjusted by `adjust`: `DataDir::with(|c| c.fsync = false)`.
    pub fn with(adjust: impl FnOnce(&mut ServerConfig)) -> DataDir {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut config = ServerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            mqtt_sys_interval: 0,
            ..ServerConfig::for_tests()
        };
        adjust(&mut config);
        DataDir { dir, config }
    }

    /// The directory the server stores its data in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration every start uses.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Starts Pigeon on the directory; `None` in reference mode (the test then returns).
    pub async fn start(&self) -> Option<TestBroker> {
        TestBroker::start_with(self.config.clone()).await
    }

    /// Shuts `broker` down cleanly and starts it again on the same directory.
    pub async fn restart(&self, broker: TestBroker) -> TestBroker {
        broker.stop().await;
        self.start().await.expect("not in reference mode")
    }
}
