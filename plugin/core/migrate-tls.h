#ifndef MIGRATE_TLS_H
#define MIGRATE_TLS_H

/* What the old server's TLS is checked against, without OpenSSL: the
   certificate name of a source given by IP address, the certificate a
   connection saw, and the pins (doveadm migrate check --pin). */

/* A certificate as the operator reads it. */
struct migrate_tls_cert {
	/* RFC 2253: "CN=imap.example.com,O=Example" */
	const char *subject, *issuer;
	/* notAfter: "YYYY-MM-DD HH:MM:SS UTC" */
	const char *not_after;
	/* SHA-256 of the DER certificate as "openssl x509 -fingerprint
	   -sha256" prints it: "AB:CD:...", 32 upper-case hex pairs; NULL
	   when no certificate was seen */
	const char *sha256;
};

/* Whether name is a host name to verify a certificate against: labels
   of letters, digits and '-' joined by '.', at most 253 characters, and
   not an IP address. */
bool migrate_tls_name_valid(const char *name);
/* Whether host is an IPv4 or IPv6 address (without brackets). */
bool migrate_tls_host_is_ip(const char *host);

/* The name to verify the certificate of a source at host against, NULL
   for host itself.  A name stands in only for a host given by IP
   address: the template row's (row_name), else the domain's (doveadm
   migrate domain start --source-tls-name), else migrate_source_ssl_hostname
   (set_name) when host is migrate_source_host (set_host). */
const char *migrate_tls_name_choose(const char *host, const char *row_name,
				    const char *domain_name,
				    const char *set_host, const char *set_name);

/* A fingerprint as the operator may write it (upper or lower case, with
   or without ':') in the canonical form of struct migrate_tls_cert;
   NULL when it is not 32 hex pairs. */
const char *migrate_tls_fingerprint_normalize(const char *fingerprint);

/* A source as pins name it: "host:port", "[v6addr]:port", lower case. */
const char *migrate_tls_source_key(const char *host, unsigned int port);

#endif
