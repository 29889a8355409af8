-- Published routes: chosen paths of a device reachable by the public on an origin of their
-- own, `{slug}.<public domain>`, without a Ponte login (DESIGN.md "Published routes").
CREATE TABLE "ROTRotaPublica" (
    "ROTCodigo" SERIAL NOT NULL,
    "ROTSlug" TEXT NOT NULL,
    "EQPCodigo" INTEGER NOT NULL,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER,
    "ROTCaminhos" JSONB NOT NULL,
    "ROTMetodos" JSONB NOT NULL,
    "ROTWebsocket" BOOLEAN NOT NULL DEFAULT false,
    "ROTRequisicoesPorMinuto" INTEGER NOT NULL,
    "ROTExpiraEm" TIMESTAMP(3),
    "ROTRequisicoes" INTEGER NOT NULL DEFAULT 0,
    "ROTBytes" BIGINT NOT NULL DEFAULT 0,
    "ROTUltimoUsoEm" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "ROTRotaPublica_pkey" PRIMARY KEY ("ROTCodigo")
);

CREATE UNIQUE INDEX "ROTRotaPublica_ROTSlug_key" ON "ROTRotaPublica"("ROTSlug");
CREATE INDEX "ROTRotaPublica_INSInstituicaoCodigo_EQPCodigo_idx" ON "ROTRotaPublica"("INSInstituicaoCodigo", "EQPCodigo");

ALTER TABLE "ROTRotaPublica" ADD CONSTRAINT "ROTRotaPublica_EQPCodigo_fkey" FOREIGN KEY ("EQPCodigo") REFERENCES "EQPEquipamento"("EQPCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "ROTRotaPublica" ADD CONSTRAINT "ROTRotaPublica_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "ROTRotaPublica" ADD CONSTRAINT "ROTRotaPublica_USRCodigo_fkey" FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE;
