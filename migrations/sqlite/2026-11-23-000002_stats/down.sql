DROP TABLE stats_search_tally;
DROP TABLE stats_records;
DROP TABLE stats_uploads;
