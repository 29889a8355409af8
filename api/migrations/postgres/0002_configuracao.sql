-- Ponte's own key/value settings, and the row /ready rewrites to prove the store can
-- take writes.
CREATE TABLE "CFGConfiguracao" (
    "CFGChave" TEXT NOT NULL,
    "CFGValor" TEXT NOT NULL,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "CFGConfiguracao_pkey" PRIMARY KEY ("CFGChave")
);
