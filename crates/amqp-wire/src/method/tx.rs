//! The tx class (90): standard transactions on a channel.
//!
//! AMQP 0-9-1 section 1.9.2. After tx.select, publishes and acks are held until tx.commit
//! (or dropped by tx.rollback).

amqp_method! {
    /// Puts the channel in transactional mode.
    TxSelect(90, 10, "tx.select")
    {
    }
}

amqp_method! {
    /// The channel is transactional.
    TxSelectOk(90, 11, "tx.select-ok")
    {
    }
}

amqp_method! {
    /// Commits the current transaction.
    TxCommit(90, 20, "tx.commit")
    {
    }
}

amqp_method! {
    /// The transaction is committed.
    TxCommitOk(90, 21, "tx.commit-ok")
    {
    }
}

amqp_method! {
    /// Abandons the current transaction.
    TxRollback(90, 30, "tx.rollback")
    {
    }
}

amqp_method! {
    /// The transaction is rolled back.
    TxRollbackOk(90, 31, "tx.rollback-ok")
    {
    }
}
