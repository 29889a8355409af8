-- Ponte's own key/value settings, and the row /ready rewrites to prove the store can
-- take writes.
CREATE TABLE "CFGConfiguracao" (
    "CFGChave" TEXT NOT NULL PRIMARY KEY,
    "CFGValor" TEXT NOT NULL,
    "updatedAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
