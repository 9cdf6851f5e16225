"""Text around the model: the typed results every backend returns, the guard against invented text,
sentences, and a call's vocabulary (hotwords and prompt)."""
