-- Ponte schema for PostgreSQL, as `prisma migrate` would write it from schema.prisma.
-- api/tests/schema.rs checks the two agree.

CREATE TYPE "ENUM_CONNECTOR_STATUS" AS ENUM ('ONLINE', 'OFFLINE', 'PAIRING');
CREATE TYPE "ENUM_SESSAO_STATUS" AS ENUM ('ATIVA', 'EXPIRADA', 'ENCERRADA');

CREATE TABLE "CLICliente" (
    "CLICodigo" SERIAL NOT NULL,
    "CLINome" TEXT NOT NULL,
    "CLIAtivo" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "CLICliente_pkey" PRIMARY KEY ("CLICodigo")
);

CREATE TABLE "INSInstituicao" (
    "INSCodigo" SERIAL NOT NULL,
    "CLICodigo" INTEGER NOT NULL,
    "INSNome" TEXT NOT NULL,
    "INSAtivo" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "INSInstituicao_pkey" PRIMARY KEY ("INSCodigo")
);

CREATE TABLE "USRUsuario" (
    "USRCodigo" SERIAL NOT NULL,
    "USRNome" TEXT NOT NULL,
    "USREmail" TEXT,
    "USRAtivo" BOOLEAN NOT NULL DEFAULT true,
    CONSTRAINT "USRUsuario_pkey" PRIMARY KEY ("USRCodigo")
);

CREATE TABLE "EQPEquipamento" (
    "EQPCodigo" SERIAL NOT NULL,
    "EQPDescricao" TEXT NOT NULL,
    "EQPMarca" TEXT,
    "EQPModelo" TEXT,
    "EQPEnderecoIp" TEXT,
    "EQPAtivo" BOOLEAN NOT NULL DEFAULT true,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "EQPUsaAddon" BOOLEAN NOT NULL DEFAULT false,
    "EQPConfig" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "EQPEquipamento_pkey" PRIMARY KEY ("EQPCodigo")
);

CREATE TABLE "CONConnector" (
    "CONCodigo" SERIAL NOT NULL,
    "CONNome" TEXT NOT NULL,
    "CONToken" TEXT,
    "CONTokenExpiraEm" TIMESTAMP(3),
    "CONStatus" "ENUM_CONNECTOR_STATUS" NOT NULL DEFAULT 'OFFLINE',
    "CONUltimoHeartbeat" TIMESTAMP(3),
    "CONConectadoDesde" TIMESTAMP(3),
    "CONVersao" TEXT,
    "CONMetadata" JSONB,
    "CLICodigo" INTEGER NOT NULL,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "CONConnector_pkey" PRIMARY KEY ("CONCodigo")
);

CREATE TABLE "PARPareamento" (
    "PARCodigo" SERIAL NOT NULL,
    "PARCodigoHash" TEXT NOT NULL,
    "PARExpiraEm" TIMESTAMP(3) NOT NULL,
    "PARUsadoEm" TIMESTAMP(3),
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "PARPareamento_pkey" PRIMARY KEY ("PARCodigo")
);

CREATE TABLE "RMTSessaoRemota" (
    "RMTCodigo" SERIAL NOT NULL,
    "RMTSessionId" TEXT NOT NULL,
    "EQPCodigo" INTEGER NOT NULL,
    "CONCodigo" INTEGER NOT NULL,
    "USRCodigo" INTEGER NOT NULL,
    "RMTStatus" "ENUM_SESSAO_STATUS" NOT NULL DEFAULT 'ATIVA',
    "RMTExpiraEm" TIMESTAMP(3) NOT NULL,
    "RMTLimiteEm" TIMESTAMP(3) NOT NULL,
    "RMTCodigoLancamento" TEXT,
    "RMTLancamentoExpiraEm" TIMESTAMP(3),
    "RMTEncerradaEm" TIMESTAMP(3),
    "RMTRequisicoes" INTEGER NOT NULL DEFAULT 0,
    "RMTBytes" BIGINT NOT NULL DEFAULT 0,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "RMTSessaoRemota_pkey" PRIMARY KEY ("RMTCodigo")
);

CREATE TABLE "AUDAuditoria" (
    "AUDCodigo" SERIAL NOT NULL,
    "AUDAcao" TEXT NOT NULL,
    "USRCodigo" INTEGER,
    "INSInstituicaoCodigo" INTEGER NOT NULL,
    "EQPCodigo" INTEGER,
    "AUDMetodo" TEXT,
    "AUDCaminho" TEXT,
    "AUDStatus" INTEGER,
    "AUDBytes" BIGINT NOT NULL DEFAULT 0,
    "AUDDuracaoMs" INTEGER,
    "AUDDetalhe" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "AUDAuditoria_pkey" PRIMARY KEY ("AUDCodigo")
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

ALTER TABLE "INSInstituicao" ADD CONSTRAINT "INSInstituicao_CLICodigo_fkey" FOREIGN KEY ("CLICodigo") REFERENCES "CLICliente"("CLICodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "EQPEquipamento" ADD CONSTRAINT "EQPEquipamento_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "CONConnector" ADD CONSTRAINT "CONConnector_CLICodigo_fkey" FOREIGN KEY ("CLICodigo") REFERENCES "CLICliente"("CLICodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "CONConnector" ADD CONSTRAINT "CONConnector_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "PARPareamento" ADD CONSTRAINT "PARPareamento_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "PARPareamento" ADD CONSTRAINT "PARPareamento_USRCodigo_fkey" FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "RMTSessaoRemota" ADD CONSTRAINT "RMTSessaoRemota_EQPCodigo_fkey" FOREIGN KEY ("EQPCodigo") REFERENCES "EQPEquipamento"("EQPCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "RMTSessaoRemota" ADD CONSTRAINT "RMTSessaoRemota_CONCodigo_fkey" FOREIGN KEY ("CONCodigo") REFERENCES "CONConnector"("CONCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "RMTSessaoRemota" ADD CONSTRAINT "RMTSessaoRemota_USRCodigo_fkey" FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "RMTSessaoRemota" ADD CONSTRAINT "RMTSessaoRemota_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "AUDAuditoria" ADD CONSTRAINT "AUDAuditoria_INSInstituicaoCodigo_fkey" FOREIGN KEY ("INSInstituicaoCodigo") REFERENCES "INSInstituicao"("INSCodigo") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "AUDAuditoria" ADD CONSTRAINT "AUDAuditoria_USRCodigo_fkey" FOREIGN KEY ("USRCodigo") REFERENCES "USRUsuario"("USRCodigo") ON DELETE SET NULL ON UPDATE CASCADE;
