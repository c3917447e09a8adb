-- 008: the caller chooses the claim token.
--
-- A claim whose commit succeeded but whose answer was lost (the connection broke during the
-- commit, PostgreSQL restarted) used to hold the event until its lease ran out, and every
-- redelivery meanwhile was answered 409 event_in_flight. The worker now draws the token itself
-- (a random UUID) and passes it in. When the claim call fails without an answer, the worker
-- knows the token of a claim that may exist and that it will never send under, so once the
-- database is back it records that claim as failed (email_record_outcome with status 'failed',
-- which gives the quota unit back); the next redelivery claims the event at once. Nothing was
-- sent under that token, so giving it up cannot cause a duplicate.
--
-- The new parameter has a default, so a worker of the previous release calling with twelve
-- arguments (during a rolling upgrade) keeps working and gets a drawn token as before. The drop
-- and functions.sql's new definition run in the same migrate transaction.

DROP FUNCTION email_claim_event(text, text, text, text, text, boolean, integer, integer, text, text, text, text);
-- functions.sql creates it again with the p_claim_token parameter (DEFAULT NULL).
