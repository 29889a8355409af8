-- Published routes: chosen paths of a device reachable by the public on an origin of their
-- own, `{slug}.<public domain>`, without a Ponte login (DESIGN.md "Published routes").
CREATE TABLE "ROTRotaPublica" (
    "ROTCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "ROTSlug" TEXT NOT NULL,
    "EQPCodigo" INTEGER NOT NULL,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER,
    "ROTCaminhos" TEXT NOT NULL,
    "ROTMetodos" TEXT NOT NULL,
    "ROTWebsocket" BOOLEAN NOT NULL DEFAULT false,
    "ROTRequisicoesPorMinuto" INTEGER NOT NULL,
    "ROTExpiraEm" DATETIME,
    "ROTRequisicoes" INTEGER NOT NULL DEFAULT 0,
    "ROTBytes" BIGINT NOT NULL DEFAULT 0,
    "ROTUltimoUsoEm" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    "updatedAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("EQPCodigo") REFERENCES "EQPEquipamento"("EQPCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE UNIQUE INDEX "ROTRotaPublica_ROTSlug_key" ON "ROTRotaPublica"("ROTSlug");
CREATE INDEX "ROTRotaPublica_INSInstituicaoCodigo_EQPCodigo_idx" ON "ROTRotaPublica"("INSInstituicaoCodigo", "EQPCodigo");
