DROP TABLE audit_events;
DROP TABLE appointments;
DROP TABLE holds;
DROP TABLE slots;
DROP TABLE places;
DROP TABLE sources;
DROP TABLE api_tokens;
DROP TABLE accounts;
