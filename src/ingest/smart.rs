//! SMART Scheduling Links.
use super::{FeedError, IngestContext, IngestOutcome};
pub fn ingest_ndjson(_bytes: &[u8], _ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    Err(FeedError::Empty)
}
