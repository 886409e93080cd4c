//! History queries: a client's `history` command (answered by the owner straight to the
//! connection's shard), the API's `history` and `history_remove` (awaited here).

use super::ask::Ask;
use super::Shard;

/// A history query sent to its owner.
pub type HistoryAsk = Ask<Result<HistoryPage, ErrorCode>>;
/// A history removal sent to its owner.
pub type RemoveAsk = Ask<Result<(), ErrorCode>>;
use crate::protocol::ErrorCode;
use crate::router::msg::{
    ConnAnswer, ConnRef, HistoryJob, HistoryPage, HistoryQuery, HistoryReplyTo, ReplyTo,
};
use crate::router::ShardMsg;

impl Shard {
    /// A client's `history` command: the owner answers to connection `conn`'s command.
    pub fn history_for_connection(
        &self,
        channel: &str,
        query: HistoryQuery,
        conn: u64,
        command: u32,
    ) {
        let reply = HistoryReplyTo::Conn(ConnRef {
            shard: self.id,
            conn,
            command,
        });
        self.ask_history(channel, query, reply);
    }

    fn ask_history(&self, channel: &str, query: HistoryQuery, reply: HistoryReplyTo) {
        let job = HistoryJob {
            channel: channel.into(),
            query,
            reply,
        };
        self.to_owner(channel, ShardMsg::History(Box::new(job)));
    }

    /// The API's `history`: the page or an error (100 if the owner did not answer in time).
    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ErrorCode> {
        let ask = self.send_history(channel, query);
        self.history_answer(ask).await
    }

    /// The first half of `history`: the query sent to the owner now.
    pub fn send_history(&self, channel: &str, query: HistoryQuery) -> HistoryAsk {
        let ask = self.histories.open(1);
        let reply = HistoryReplyTo::Api(ReplyTo {
            shard: self.id,
            request: ask.id,
        });
        self.ask_history(channel, query, reply);
        ask
    }

    /// The second half of `history`: the owner's answer.
    pub async fn history_answer(&self, ask: HistoryAsk) -> Result<HistoryPage, ErrorCode> {
        let answer = self.histories.next(&ask).await;
        self.histories.close(&ask);
        answer.unwrap_or(Err(ErrorCode::Internal))
    }

    /// The API's `history_remove`: done once the owner removed it.
    pub async fn history_remove(&self, channel: &str) -> Result<(), ErrorCode> {
        let ask = self.send_history_remove(channel);
        self.history_remove_answer(ask).await
    }

    /// The first half of `history_remove`: the removal sent to the owner now.
    pub fn send_history_remove(&self, channel: &str) -> RemoveAsk {
        let ask = self.removals.open(1);
        let reply = ReplyTo {
            shard: self.id,
            request: ask.id,
        };
        self.to_owner(
            channel,
            ShardMsg::HistoryRemove {
                channel: channel.into(),
                reply,
            },
        );
        ask
    }

    /// The second half of `history_remove`: the owner's answer.
    pub async fn history_remove_answer(&self, ask: RemoveAsk) -> Result<(), ErrorCode> {
        let answer = self.removals.next(&ask).await;
        self.removals.close(&ask);
        answer.unwrap_or(Err(ErrorCode::Internal))
    }

    /// Owner work for a history query.
    pub(super) fn run_history(&self, job: HistoryJob) {
        if self.redis().is_some() {
            return self.run_history_redis(job);
        }
        let result = self.engine.borrow_mut().history(&job.channel, &job.query);
        self.answer_history(job.reply, result);
    }

    /// Sends a history query's result to whoever asked.
    pub(super) fn answer_history(
        &self,
        reply: HistoryReplyTo,
        result: Result<HistoryPage, ErrorCode>,
    ) {
        match reply {
            HistoryReplyTo::Conn(conn) => self.to_shard(
                conn.shard,
                ShardMsg::ConnAnswer {
                    conn: conn.conn,
                    command: conn.command,
                    answer: Box::new(ConnAnswer::History(result)),
                },
            ),
            HistoryReplyTo::Api(reply) => self.to_shard(
                reply.shard,
                ShardMsg::HistoryAnswer {
                    request: reply.request,
                    result: Box::new(result),
                },
            ),
        }
    }
}
