-- dovecot-migrate: the tables of the domain dict in SQL
-- (dovecot-migrate-dict-sql.conf.ext), for clusters whose nodes share
-- the phases of each domain's migration.  PostgreSQL, in the database of
-- dovecot-migrate-accounts.sql:
--
--   psql -U dovecot -d mail -f dovecot-migrate-dict.sql
--
-- Each value is what the file dict would hold under the same key.

CREATE TABLE IF NOT EXISTS migrate_dict_domain (
  domain varchar(255) PRIMARY KEY,
  value text NOT NULL
);
CREATE TABLE IF NOT EXISTS migrate_dict_relay (
  service varchar(32) NOT NULL,
  domain varchar(255) NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (service, domain)
);
CREATE TABLE IF NOT EXISTS migrate_dict_pin (
  domain varchar(255) NOT NULL,
  source varchar(512) NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (domain, source)
);
CREATE TABLE IF NOT EXISTS migrate_dict_account (
  domain varchar(255) NOT NULL,
  username varchar(320) NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (domain, username)
);
