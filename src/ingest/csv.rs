//! CSV.
use super::{FeedError, IngestContext, IngestOutcome};
pub fn ingest_csv(_bytes: &[u8], _ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    Err(FeedError::Empty)
}
