-- Ponte schema for SQLite (the embedded default): the same tables, columns, optionality
-- and unique keys as ../postgres/0001_init.sql; api/tests/schema.rs checks they agree.
-- Enums are TEXT with a CHECK; timestamps are TEXT written by sqlx; JSON is TEXT.

CREATE TABLE "CLICliente" (
    "CLICodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "CLINome" TEXT NOT NULL,
    "CLIAtivo" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE "INSInstituicao" (
    "INSCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "CLICodigo" INTEGER NOT NULL,
    "INSNome" TEXT NOT NULL,
    "INSAtivo" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("CLICodigo") REFERENCES "CLICliente"("CLICodigo") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "USRUsuario" (
    "USRCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "USRNome" TEXT NOT NULL,
    "USREmail" TEXT,
    "USRAtivo" BOOLEAN NOT NULL DEFAULT true
);

CREATE TABLE "EQPEquipamento" (
    "EQPCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "EQPDescricao" TEXT NOT NULL,
    "EQPMarca" TEXT,
    "EQPModelo" TEXT,
    "EQPEnderecoIp" TEXT,
    "EQPAtivo" BOOLEAN NOT NULL DEFAULT true,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "EQPUsaAddon" BOOLEAN NOT NULL DEFAULT false,
    "EQPConfig" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "CONConnector" (
    "CONCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "CONNome" TEXT NOT NULL,
    "CONToken" TEXT,
    "CONTokenExpiraEm" DATETIME,
    "CONStatus" TEXT NOT NULL DEFAULT 'OFFLINE' CHECK ("CONStatus" IN ('ONLINE', 'OFFLINE', 'PAIRING')),
    "CONUltimoHeartbeat" DATETIME,
    "CONConectadoDesde" DATETIME,
    "CONVersao" TEXT,
    "CONMetadata" TEXT,
    "CLICodigo" INTEGER NOT NULL,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    "updatedAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("CLICodigo") REFERENCES "CLICliente"("CLICodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "PARPareamento" (
    "PARCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "PARCodigoHash" TEXT NOT NULL,
    "PARExpiraEm" DATETIME NOT NULL,
    "PARUsadoEm" DATETIME,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE TABLE "RMTSessaoRemota" (
    "RMTCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "RMTSessionId" TEXT NOT NULL,
    "EQPCodigo" INTEGER NOT NULL,
    "CONCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER NOT NULL,
    "RMTStatus" TEXT NOT NULL DEFAULT 'ATIVA' CHECK ("RMTStatus" IN ('ATIVA', 'EXPIRADA', 'ENCERRADA')),
    "RMTExpiraEm" DATETIME NOT NULL,
    "RMTLimiteEm" DATETIME NOT NULL,
    "RMTCodigoLancamento" TEXT,
    "RMTLancamentoExpiraEm" DATETIME,
    "RMTEncerradaEm" DATETIME,
    "RMTRequisicoes" INTEGER NOT NULL DEFAULT 0,
    "RMTBytes" BIGINT NOT NULL DEFAULT 0,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    "updatedAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("EQPCodigo") REFERENCES "EQPEquipamento"("EQPCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("CONCodigo") REFERENCES "CONConnector"("CONCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "AUDAuditoria" (
    "AUDCodigo" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "AUDAcao" TEXT NOT NULL,
    "USRCodigo" INTEGER,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "EQPCodigo" INTEGER,
    "AUDMetodo" TEXT,
    "AUDCaminho" TEXT,
    "AUDStatus" INTEGER,
    "AUDBytes" BIGINT NOT NULL DEFAULT 0,
    "AUDDuracaoMs" INTEGER,
    "AUDDetalhe" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE,
    FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE UNIQUE INDEX "USRUsuario_USREmail_key" ON "USRUsuario"("USREmail");
CREATE INDEX "EQPEquipamento_INSInstituicaoCodigo_idx" ON "EQPEquipamento"("INSInstituicaoCodigo");
CREATE UNIQUE INDEX "CONConnector_CONToken_key" ON "CONConnector"("CONToken");
CREATE UNIQUE INDEX "CONConnector_INSInstituicaoCodigo_key" ON "CONConnector"("INSInstituicaoCodigo");
CREATE UNIQUE INDEX "PARPareamento_PARCodigoHash_key" ON "PARPareamento"("PARCodigoHash");
CREATE INDEX "PARPareamento_INSInstituicaoCodigo_idx" ON "PARPareamento"("INSInstituicaoCodigo");
CREATE UNIQUE INDEX "RMTSessaoRemota_RMTSessionId_key" ON "RMTSessaoRemota"("RMTSessionId");
CREATE UNIQUE INDEX "RMTSessaoRemota_RMTCodigoLancamento_key" ON "RMTSessaoRemota"("RMTCodigoLancamento");
CREATE INDEX "RMTSessaoRemota_INSInstituicaoCodigo_createdAt_idx" ON "RMTSessaoRemota"("INSInstituicaoCodigo", "createdAt");
CREATE INDEX "AUDAuditoria_INSInstituicaoCodigo_createdAt_idx" ON "AUDAuditoria"("INSInstituicaoCodigo", "createdAt");
