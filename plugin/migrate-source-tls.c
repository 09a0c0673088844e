/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The certificate of every TLS connection to the source, seen and held
   to its pin in the handshake itself: imapc's connections and our own.

   Dovecot 2.3.19's lib-ssl-iostream shows neither the peer certificate
   nor a way into its verification, and imapc keeps its streams to
   itself.  So this goes through OpenSSL, which both use: the "new"
   callback of an SSL ex_data index runs for every SSL object the
   process makes.  While a source exists, that callback puts our
   verification in front of OpenSSL's on the SSL_CTX of each connection
   (SSL_CTX_set_cert_verify_callback): it records the server's
   certificate, runs OpenSSL's verification as before (Dovecot's own
   callback and its decision after the handshake included) and, when a
   certificate is pinned, refuses any other one.  Dovecot's clients
   verify with SSL_VERIFY_NONE and decide after the handshake, where
   migrate_source_ssl_verify=no lets anything through; a refused pin
   therefore switches its connection to SSL_VERIFY_PEER, so that OpenSSL
   itself ends the handshake before a byte of the login is sent.

   The process's other TLS client, the OAuth2 grants' HTTPS request to
   the token endpoint (migrate-source-grant.c), may share a context with
   the source's connections: while it runs, our verification stands
   aside (migrate_source_tls_suspend()).  A process has one source at a
   time. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hex-binary.h"
#include "migrate-tls.h"
#include "migrate-source-private.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/evp.h>

struct migrate_source_tls {
	/* the pinned fingerprint, NULL: none */
	char *pin;
	/* our ex_data index, -1 while not registered */
	int ex_index;
	/* the contexts whose verification goes through us, one reference
	   each */
	ARRAY(SSL_CTX *) contexts;
	/* the last certificate seen */
	pool_t pool;
	struct migrate_tls_cert cert;
	bool pin_mismatch;
	/* a connection that is not to the source (the OAuth2 token
	   endpoint's) is being made: OpenSSL's verification alone */
	bool suspended;
};

/* "CN=...,O=..." */
static const char *tls_name_str(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	const char *str = "";
	char *data;
	long len;

	if (bio == NULL)
		return "";
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
		len = BIO_get_mem_data(bio, &data);
		str = t_strndup(data, len);
	}
	BIO_free(bio);
	return str;
}

static const char *tls_time_str(const ASN1_TIME *t)
{
	struct tm tm;
	char buf[64];

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		return "";
	return t_strdup(buf);
}

static const char *tls_sha256_str(X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;

	if (X509_digest(cert, EVP_sha256(), md, &len) != 1)
		return NULL;
	return migrate_tls_fingerprint_normalize(
		binary_to_hex_ucase(md, len));
}

static void tls_cert_remember(struct migrate_source_tls *tls, X509 *cert)
{
	const char *sha256 = tls_sha256_str(cert);

	if (sha256 == NULL || null_strcmp(sha256, tls->cert.sha256) == 0)
		return;
	p_clear(tls->pool);
	tls->cert.sha256 = p_strdup(tls->pool, sha256);
	tls->cert.subject = p_strdup(tls->pool,
		tls_name_str(X509_get_subject_name(cert)));
	tls->cert.issuer = p_strdup(tls->pool,
		tls_name_str(X509_get_issuer_name(cert)));
	tls->cert.not_after = p_strdup(tls->pool,
		tls_time_str(X509_get0_notAfter(cert)));
}

/* OpenSSL's verification of the server's certificate, with ours */
static int tls_verify(X509_STORE_CTX *store_ctx, void *context)
{
	struct migrate_source_tls *tls = context;
	X509 *cert = X509_STORE_CTX_get0_cert(store_ctx);
	SSL *ssl;
	int ret;

	if (tls->suspended)
		return X509_verify_cert(store_ctx);
	if (cert != NULL) T_BEGIN {
		tls_cert_remember(tls, cert);
	} T_END;
	ret = X509_verify_cert(store_ctx);
	if (tls->pin == NULL ||
	    (cert != NULL && null_strcmp(tls->cert.sha256, tls->pin) == 0))
		return ret;

	tls->pin_mismatch = TRUE;
	X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
	ssl = X509_STORE_CTX_get_ex_data(store_ctx,
		SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl != NULL) {
		/* a failed verification ends the handshake only in this
		   mode, whatever migrate_source_ssl_verify says */
		SSL_set_verify(ssl, SSL_VERIFY_PEER,
			       SSL_get_verify_callback(ssl));
	}
	return 0;
}

/* a new SSL object of this process: a connection to the source */
static void
tls_ssl_new(void *parent, void *ptr ATTR_UNUSED,
	    CRYPTO_EX_DATA *ad ATTR_UNUSED, int idx ATTR_UNUSED,
	    long argl ATTR_UNUSED, void *argp)
{
	struct migrate_source_tls *tls = argp;
	SSL_CTX *ssl_ctx = SSL_get_SSL_CTX(parent);
	SSL_CTX *const *ctxp;

	if (ssl_ctx == NULL)
		return;
	/* a context may have served the last source of this process:
	   ours now, whether seen before or not */
	SSL_CTX_set_cert_verify_callback(ssl_ctx, tls_verify, tls);
	array_foreach(&tls->contexts, ctxp) {
		if (*ctxp == ssl_ctx)
			return;
	}
	SSL_CTX_up_ref(ssl_ctx);
	array_push_back(&tls->contexts, &ssl_ctx);
}

int migrate_source_tls_init(struct migrate_source *source, const char *pin,
			    const char **error_r)
{
	struct migrate_source_tls *tls;

	tls = i_new(struct migrate_source_tls, 1);
	tls->pin = i_strdup(pin);
	tls->pool = pool_alloconly_create("migrate source certificate", 512);
	i_array_init(&tls->contexts, 2);
	tls->ex_index = SSL_get_ex_new_index(0, tls, tls_ssl_new, NULL, NULL);
	source->tls = tls;
	if (tls->ex_index < 0) {
		*error_r = "SSL_get_ex_new_index() failed";
		return -1;
	}
	return 0;
}

void migrate_source_tls_suspend(struct migrate_source_tls *tls,
				bool suspend)
{
	if (tls != NULL)
		tls->suspended = suspend;
}

void migrate_source_tls_deinit(struct migrate_source_tls **_tls)
{
	struct migrate_source_tls *tls = *_tls;
	SSL_CTX **ctxp;

	if (tls == NULL)
		return;
	*_tls = NULL;
	if (tls->ex_index >= 0)
		(void)CRYPTO_free_ex_index(CRYPTO_EX_INDEX_SSL, tls->ex_index);
	array_foreach_modifiable(&tls->contexts, ctxp) {
		SSL_CTX_set_cert_verify_callback(*ctxp, NULL, NULL);
		SSL_CTX_free(*ctxp);
	}
	array_free(&tls->contexts);
	pool_unref(&tls->pool);
	i_free(tls->pin);
	i_free(tls);
}

void migrate_source_tls_get_peer(const struct migrate_source_tls *tls,
				 pool_t pool, struct migrate_source_peer *peer_r)
{
	i_zero(peer_r);
	if (tls == NULL)
		return;
	peer_r->cert.subject = p_strdup(pool, tls->cert.subject);
	peer_r->cert.issuer = p_strdup(pool, tls->cert.issuer);
	peer_r->cert.not_after = p_strdup(pool, tls->cert.not_after);
	peer_r->cert.sha256 = p_strdup(pool, tls->cert.sha256);
	peer_r->pin_mismatch = tls->pin_mismatch;
}

const char *migrate_source_tls_pin_error(const struct migrate_source_tls *tls)
{
	if (tls == NULL || !tls->pin_mismatch)
		return NULL;
	return t_strdup_printf("The source's certificate (SHA-256 %s, "
		"subject %s) is not the one pinned for it (SHA-256 %s); if "
		"the old provider changed it, check it and pin it again "
		"(doveadm migrate check --pin)",
		tls->cert.sha256 == NULL ? "none" : tls->cert.sha256,
		tls->cert.subject == NULL ? "none" : tls->cert.subject,
		tls->pin);
}
